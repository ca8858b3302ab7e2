"""The demo's functions: a hand-off job (@task) and one cron task of each callable kind.

``tally`` is the job the demo page's button enqueues. The cron task functions
take one parameter, ``message``: a dict with the ``task`` (Sisy's Task row)
and the Channels ``message`` that started the run.
"""

import logging
import os
import time

from django.utils import timezone

from sisy.models import Task, TaskRun
from sisy.tasks import task

log = logging.getLogger('demoapp')


class DemoFailure(Exception):
    """What tally raises when the demo page asks it to fail."""


@task
def tally(work_seconds, fail=False):
    """Count Sisy's tasks and runs after `work_seconds` of stand-in work; the demo page's job.

    The pause stands for the slow part of real work (a mail server, an export),
    so the page can show the job RUNNING. With `fail` it raises instead, to show
    a FAILED job and its error.
    """
    log.info('Hand-off job tally: working for %s s', work_seconds)
    time.sleep(work_seconds)
    if fail:
        raise DemoFailure('The demo page asked this job to fail.')
    return {'tasks': Task.objects.count(), 'runs': TaskRun.objects.count(), 'pid': os.getpid()}


def say_hello(message):
    """A plain function; keeps its own run count in the task's userdata."""
    task = message['task']
    task.userdata['runs'] = task.userdata.get('runs', 0) + 1
    log.info('Hello from a function task (%r, run %d)', task.label, task.userdata['runs'])


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
