from django.apps import AppConfig
from django.core import checks


class SisyConfig(AppConfig):
    name = 'sisy'
    verbose_name = 'Sisy scheduled tasks'

    def ready(self):
        from sisy import checks as sisy_checks
        checks.register(sisy_checks.check_time_zone_support, 'sisy')
        checks.register(sisy_checks.check_settings, 'sisy')
        checks.register(sisy_checks.check_channel_layer, 'sisy')
