"""Sisy's HTTP views: ``path('sisy/', include('sisy.urls'))`` serves /sisy/metrics."""

from sisy import metrics

try:
    from django.urls import path
except ImportError:  # Django 1.11
    from django.conf.urls import url

    def path(route, view, name):
        return url(r'^%s$' % route, view, name=name)

app_name = 'sisy'
urlpatterns = [path('metrics', metrics.metrics, name='metrics')]
