"""Run history stays bounded: old finished runs go, active runs and recent ones stay."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from sisy import health, history
from sisy.models import Task, TaskRun, TickRecord, task_with_callable
from tests.testapp import tasks

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def run(age_days, status, task=None):
    """A run record created `age_days` ago."""
    record = TaskRun.objects.create(task=task, task_label='t', status=status,
                                    scheduled_for=timezone.now())
    TaskRun.objects.filter(pk=record.pk).update(created_at=timezone.now() - age_days * DAY)
    return record.pk


@pytest.fixture
def fresh_throttle(monkeypatch):
    monkeypatch.setattr(history, '_next_prune', 0.0)


def test_finished_runs_older_than_the_limit_are_deleted():
    old = [run(31, status) for status in ('ok', 'error', 'lost')]
    active = [run(31, status) for status in ('pending', 'running')]
    recent = run(29, 'ok')
    assert history.prune_runs(timezone.now()) == 3
    remaining = set(TaskRun.objects.values_list('pk', flat=True))
    assert remaining == set(active) | {recent}
    assert not remaining & set(old)


@override_settings(SISY_RUN_HISTORY_DAYS=None)
def test_none_keeps_all_history():
    run(3650, 'ok')
    assert history.prune_runs(timezone.now()) == 0
    assert TaskRun.objects.count() == 1


@override_settings(SISY_RUN_HISTORY_DAYS=0.5)
def test_the_limit_can_be_a_fraction_of_a_day():
    run(0.6, 'ok')
    run(0.4, 'ok')
    assert history.prune_runs(timezone.now()) == 1


@override_settings(SISY_RUN_HISTORY_DAYS='a month')
def test_an_unusable_limit_keeps_everything_and_says_why(caplog):
    run(100, 'ok')
    assert history.prune_runs(timezone.now()) == 0
    assert "SISY_RUN_HISTORY_DAYS='a month' is not a number of days" in caplog.text


def test_ticks_prune_at_most_once_per_interval(fresh_throttle):
    clock = [1000.0]
    run(40, 'ok')
    assert history.prune_now_and_then(lambda: clock[0]) == 1
    run(40, 'ok')
    clock[0] += history.PRUNE_INTERVAL - 1
    assert history.prune_now_and_then(lambda: clock[0]) == 0
    clock[0] += 1
    assert history.prune_now_and_then(lambda: clock[0]) == 1


def test_a_tick_prunes_the_history(worker, soon, fresh_throttle):
    task = task_with_callable(tasks.record, label='pruned')
    task.save()
    old = run(45, 'ok', task)
    worker.tick(soon)
    assert not TaskRun.objects.filter(pk=old).exists()
    Task.objects.get(pk=task.pk)  # the task itself stays


def ticked(worker, age_days):
    """The tick record of a worker that last handled a tick `age_days` ago."""
    when = timezone.now() - age_days * DAY
    return TickRecord.objects.create(worker=worker, tick=when, processed_at=when).pk


def test_tick_records_of_workers_gone_longer_than_the_history_are_deleted():
    ticked('gone', 45)
    ticked('restarted since', 31)
    recent = {ticked('busy', 29), ticked('live', 0)}
    last = health.last_tick()
    history.prune_runs(timezone.now())
    assert set(TickRecord.objects.values_list('pk', flat=True)) == recent
    assert health.last_tick() == last


def test_the_last_tick_record_stays_however_old():
    ticked('older', 90)
    newest = ticked('stopped', 60)
    last = health.last_tick()
    history.prune_runs(timezone.now())
    assert list(TickRecord.objects.values_list('pk', flat=True)) == [newest]
    assert health.last_tick() == last  # the health check still says how long ago


@override_settings(SISY_RUN_HISTORY_DAYS=None)
def test_none_keeps_the_tick_records_too():
    ticked('gone', 3650)
    ticked('live', 0)
    history.prune_runs(timezone.now())
    assert TickRecord.objects.count() == 2


def test_a_job_keeps_its_id_when_pruning_took_its_first_attempt():
    from sisy.testing import run_due_tasks
    from tests.testapp import jobs
    result = jobs.fail_once.enqueue('pruned')
    run_due_tasks()
    old = timezone.now() - dt.timedelta(days=40)
    TaskRun.objects.filter(pk=int(result.id)).update(created_at=old)
    history.prune_runs(timezone.now())
    assert not TaskRun.objects.filter(pk=int(result.id)).exists()
    later = jobs.fail_once.get_result(result.id)
    assert later.id == result.id and later.status == 'SUCCESSFUL'
