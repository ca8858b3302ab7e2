"""The task functions the real-process tests schedule, and the hand-off jobs they enqueue."""

import os
import time

from django.db import DatabaseError
from django.db.models.functions import Now
from django.utils import timezone

from sisy.models import TaskRun
from sisy.tasks import task
from tests.integration.probe.apps import crash_here
from tests.integration.probe.models import ProbeRun


class PlannedFailure(Exception):
    """Raised by the probe functions that fail on purpose (never trouble in a log)."""


def record(message):
    """Write down this call: which task, its tag, the run it served, where and when."""
    task = message['task']
    crash_here('inside', task.label)
    ProbeRun.objects.create(
        label=task.label, tag=str(task.userdata.get('tag', '')),
        run_id=message['message'].content.get('run_id'), pid=os.getpid(), at=timezone.now())


def hang(message):
    """Record the call, then never return on its own (until interrupted)."""
    record(message)
    while True:
        time.sleep(1)


def hang_stubbornly(message):
    """Record the call, then never return, ignoring even Sisy's interruption."""
    record(message)
    while True:
        try:
            time.sleep(1)
        except BaseException:
            pass


def sleep_a_while(message):
    """Record the call, then keep its worker busy for userdata['seconds']."""
    record(message)
    time.sleep(float(message['task'].userdata.get('seconds', 3)))


def sleep_then_record(message):
    """Sleep userdata['seconds'], then try to record the call, giving up quietly if the
    database is away: a function that handles its own database errors."""
    time.sleep(float(message['task'].userdata.get('seconds', 2)))
    try:
        record(message)
    except DatabaseError:
        pass
def record_span(message):
    """Record the call's start and end by the database's clock, which every host shares.

    It lasts userdata['seconds'] (default 3); the end is written even when
    Sisy interrupts it.
    """
    task = message['task']
    call = ProbeRun.objects.create(
        label=task.label, tag=str(task.userdata.get('tag', '')),
        run_id=message['message'].content.get('run_id'), pid=os.getpid(), at=Now())
    try:
        time.sleep(float(task.userdata.get('seconds', 3)))
    finally:
        ProbeRun.objects.filter(pk=call.pk).update(ended=Now())


def record_then_fail_first(message):
    """Record the call with its attempt number, then fail if it is the first attempt."""
    task = message['task']
    run_id = message['message'].content.get('run_id')
    attempt = TaskRun.objects.filter(pk=run_id).values_list('attempt', flat=True).first()
    ProbeRun.objects.create(label=task.label, tag=str(task.userdata.get('tag', '')),
                            run_id=run_id, pid=os.getpid(), at=timezone.now(), attempt=attempt)
    if attempt == 1:
        raise PlannedFailure('attempt 1 of %r fails on purpose' % task.label)


def _record_attempt(context, tag):
    ProbeRun.objects.create(label='job', tag=tag, run_id=int(context.task_result.id),
                            pid=os.getpid(), at=timezone.now(), attempt=context.attempt)


@task(takes_context=True)
def record_job(context, tag):
    """A hand-off job: record its start (tag, job id, attempt, pid, time)."""
    _record_attempt(context, tag)
    return tag


@task(takes_context=True, retries=1, retry_delay=0)
def fail_first_attempt(context, tag):
    """A hand-off job retried at once: record each attempt; the first one fails."""
    _record_attempt(context, tag)
    if context.attempt == 1:
        raise PlannedFailure('attempt 1 of job %r fails on purpose' % tag)
    return tag
