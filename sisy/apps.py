from django.apps import AppConfig


class SisyConfig(AppConfig):
    name = 'sisy'
    verbose_name = 'Sisy scheduled tasks'
