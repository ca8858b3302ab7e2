from django.apps import AppConfig


class DemoAppConfig(AppConfig):
    name = 'demoapp'
    verbose_name = 'Sisy demo'

    def ready(self):
        from demoapp import sqlite
        sqlite.connect_signal()
