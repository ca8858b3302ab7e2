from django.conf.urls import url
from django.contrib import admin

from demoapp import views

urlpatterns = [
    url(r'^$', views.index, name='index'),
    url(r'^hand-off/$', views.hand_off, name='hand-off'),
    url(r'^jobs/(?P<job_id>\d+)/$', views.job, name='job'),
    url(r'^admin/', admin.site.urls),
]
