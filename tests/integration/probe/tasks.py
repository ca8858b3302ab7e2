"""The task function the real-process tests schedule."""

import os
import time

from django.db import DatabaseError
from django.db.models.functions import Now
from django.utils import timezone

from tests.integration.probe.apps import crash_here
from tests.integration.probe.models import ProbeRun


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
