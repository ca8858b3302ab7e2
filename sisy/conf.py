"""Sisy's settings, read from Django's settings each time they are used."""

from django.conf import settings as django_settings

DEFAULTS = {
    'SISY_HEARTBEAT_CHANNEL': 'sisy.heartbeat',
    'SISY_RUN_TASK_CHANNEL': 'sisy.run_task',
    'SISY_KILL_TASK_CHANNEL': 'sisy.kill_task',
    'SISY_HEARTBEAT_FREQUENCY': 60,
    'SISY_DEFAULT_SCHEDULE': '* * * * *',
    # Run records older than this many days are deleted; None keeps them all.
    'SISY_RUN_HISTORY_DAYS': 30,
}


def setting(name):
    """Return the Sisy setting `name`, or its documented default."""
    return getattr(django_settings, name, DEFAULTS[name])
