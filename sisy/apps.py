from django.apps import AppConfig
from django.core import checks


class SisyConfig(AppConfig):
    name = 'sisy'
    verbose_name = 'Sisy scheduled tasks'

    def ready(self):
        from sisy import checks as sisy_checks, dispatch, ledger, signals, testing
        signals.task_due_now.connect(dispatch.on_task_due_now, dispatch_uid='sisy.now')
        signals.task_due_now.connect(testing.on_task_due_now, dispatch_uid='sisy.eager')
        signals.task_reenabled.connect(ledger.on_task_reenabled, dispatch_uid='sisy.ledger')
        checks.register(sisy_checks.check_time_zone_support, 'sisy')
        checks.register(sisy_checks.check_settings, 'sisy')
        checks.register(sisy_checks.check_channel_layer, 'sisy')
