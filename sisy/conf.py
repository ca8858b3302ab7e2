"""Sisy's settings, read from Django's settings each time they are used."""

from django.conf import settings as django_settings

DEFAULTS = {
    'SISY_HEARTBEAT_CHANNEL': 'sisy.heartbeat',
    'SISY_RUN_TASK_CHANNEL': 'sisy.run_task',
    'SISY_KILL_TASK_CHANNEL': 'sisy.kill_task',
    # The queues runs may wait in; sisy.routing gives each its own run channel.
    'SISY_QUEUES': ('default',),
    'SISY_HEARTBEAT_FREQUENCY': 60,
    'SISY_DEFAULT_SCHEDULE': '* * * * *',
    # Run records older than this many days are deleted; None keeps them all.
    'SISY_RUN_HISTORY_DAYS': 30,
    # Seconds a run may take before it is interrupted; None means no limit.
    'SISY_DEFAULT_TIMEOUT': None,
    # The bearer token that lets a scraper read sisy.urls' metrics; None: staff sessions only.
    'SISY_METRICS_TOKEN': None,
    # Task labels given their own metrics series per scrape (failing ones first).
    'SISY_METRICS_TASK_LIMIT': 1000,
    # True (in tests): Task.run_once and run_iterations(run_immediately=True) run the
    # function at once, in the calling process.
    'SISY_ALWAYS_EAGER': False,
}


def setting(name):
    """Return the Sisy setting `name`, or its documented default."""
    return getattr(django_settings, name, DEFAULTS[name])
