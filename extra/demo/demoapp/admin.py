from django.contrib import admin

from demoapp.models import Counter, OneOffRun

admin.site.register(Counter)
admin.site.register(OneOffRun, list_display=('requested_at', 'ran_at', 'pid'))
