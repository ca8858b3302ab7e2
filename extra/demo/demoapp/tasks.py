"""The demo's task functions: one of each kind Sisy can run.

Each takes one parameter, ``message``: a dict with the ``task`` (Sisy's Task
row) and the Channels ``message`` that started the run.
"""

import logging

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sisy.models import Task, TaskRun

log = logging.getLogger('demoapp')


def say_hello(message):
    """A plain function; keeps its own run count in the task's userdata."""
    task = message['task']
    task.userdata['runs'] = task.userdata.get('runs', 0) + 1
    log.info('Hello from a function task (%r, run %d)', task.label, task.userdata['runs'])


def one_off(message):
    """Started once by the demo page (Task.run_once); records that it ran."""
    from demoapp.models import OneOffRun
    requested = parse_datetime(message['task'].userdata.get('requested_at', '')) or timezone.now()
    OneOffRun.objects.create(requested_at=requested)
    log.info('One-off task ran %.1f s after the page asked for it',
             (timezone.now() - requested).total_seconds())


class Reports:
    """Holds a classmethod and a staticmethod task."""

    @classmethod
    def summary(cls, message):
        """A classmethod: log how many tasks and runs Sisy holds."""
        log.info('%s.summary (classmethod): %d task(s), %d run(s) recorded',
                 cls.__name__, Task.objects.count(), TaskRun.objects.count())

    @staticmethod
    def tick_tock(message):
        """A staticmethod: log the time in the project's time zone."""
        log.info('Tick-tock (staticmethod): %s', timezone.localtime().strftime('%H:%M:%S %Z'))
