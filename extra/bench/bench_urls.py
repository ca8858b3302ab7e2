"""A URLconf that includes sisy.urls, as docs/installation.rst recommends (memory.py --urls)."""

from django.urls import include, path

urlpatterns = [path('sisy/', include('sisy.urls'))]
