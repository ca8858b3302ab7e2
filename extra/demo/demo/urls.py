from django.conf.urls import url
from django.contrib import admin

from demoapp import views

urlpatterns = [
    url(r'^$', views.index, name='index'),
    url(r'^run-once/$', views.run_once, name='run-once'),
    url(r'^admin/', admin.site.urls),
]
