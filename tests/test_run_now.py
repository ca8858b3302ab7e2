"""'Run now' makes a task due at once; the next tick claims it like any other slot."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from sisy import dispatch
from sisy.models import Task, TaskRun, task_with_callable
from tests.testapp import tasks
from tests.testapp.models import Call

pytestmark = pytest.mark.django_db


def make(label, **fields):
    task = task_with_callable(tasks.record, label=label, schedule='30 0 * * *', **fields)
    task.save()
    return task


def test_run_now_runs_at_the_next_tick_then_the_schedule_resumes(worker):
    task = make('nightly')
    scheduled = task.next_run
    now = timezone.now()
    assert dispatch.run_now(Task.objects.filter(pk=task.pk), now) == 1
    worker.tick(now)
    worker.tick(now)  # a second heartbeat's tick: still one run
    assert Call.objects.filter(label='nightly').count() == 1
    task.refresh_from_db()
    assert task.next_run == scheduled and task.last_outcome == 'ok'


def test_run_now_skips_disabled_and_finished_tasks(worker):
    make('off', enabled=False)
    finished = make('finished')
    Task.objects.filter(pk=finished.pk).update(next_run=None)
    now = timezone.now()
    assert dispatch.run_now(Task.objects.all(), now) == 0
    worker.tick(now)
    assert Call.objects.count() == 0 and TaskRun.objects.count() == 0


def test_run_now_keeps_an_earlier_due_time():
    task = make('overdue')
    earlier = timezone.now() - dt.timedelta(hours=1)
    Task.objects.filter(pk=task.pk).update(next_run=earlier)
    assert dispatch.run_now(Task.objects.all(), timezone.now()) == 1
    # The overdue slot is the one claimed, not one moved to now.
    assert TaskRun.objects.get(task=task).scheduled_for == earlier


@override_settings(SISY_HEARTBEAT_FREQUENCY=60)
def test_next_tick_time_is_the_next_whole_minute():
    now = dt.datetime(2024, 3, 31, 0, 59, 30, tzinfo=dt.timezone.utc)
    assert dispatch.next_tick_time(now) == dt.datetime(2024, 3, 31, 1, 0, tzinfo=dt.timezone.utc)
