from django.contrib import admin

from demoapp.models import Counter

admin.site.register(Counter)
