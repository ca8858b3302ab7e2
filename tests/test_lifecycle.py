"""The run lifecycle's transitions: fenced finishes, retries, lost jobs, repairs, edits."""

import datetime as dt
import logging

import pytest
from django.db import OperationalError
from django.utils import timezone

from sisy import dispatch, lifecycle, retries
from sisy.models import Task, TaskRun, task_with_callable
from tests.conftest import finish_run, take_one
from tests.testapp import tasks
from tests.testapp.models import Call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures('sql_path')]

MINUTE = dt.timedelta(minutes=1)


def make(label, function=tasks.record, **fields):
    task = task_with_callable(function, label=label, **fields)
    task.save()
    return task


def statuses(label):
    return list(TaskRun.objects.filter(task_label=label).order_by('pk')
                .values_list('attempt', 'status'))


def die_while_running(worker, when):
    """Claim at `when`, then play a worker that took the runs and died mid-run.

    Its leases ended a minute ago by every clock (PostgreSQL's judges them).
    """
    dispatch.process_tick(when, now=when)
    worker.layer.channel_layer.flush()
    TaskRun.objects.filter(status='pending').update(
        status='running', started_at=when, lease_until=timezone.now() - MINUTE, host='gone',
        pid=1)


def test_a_finish_by_a_worker_that_lost_its_run_records_the_truth_and_leaves_the_task(soon):
    task = make('fenced', schedule='* * * * *', allow_overlap=True)
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    [run_id] = dispatch.claim_due_tasks(soon)
    run = take_one(soon, MINUTE, run_id)
    TaskRun.objects.filter(pk=run_id).update(status='lost')       # recovery's verdict
    [newer] = dispatch.claim_due_tasks(soon + MINUTE)              # the next slot's run
    take_one(soon + MINUTE, MINUTE, newer)
    assert finish_run(run, 'ok', '') is False
    record = TaskRun.objects.get(pk=run_id)
    assert record.status == 'ok' and 'after this run had been recorded lost' in record.error
    task.refresh_from_db()
    assert task.running, 'a late finish released a task another run holds'
    assert task.last_outcome == ''


def test_a_failing_run_is_retried_after_the_delay_with_attempt_numbers(worker):
    make('flaky', function=tasks.explode, wait_for_schedule=False, retries=2, retry_delay=30,
         iterations=1)
    start = timezone.now()
    worker.tick(start)
    assert statuses('flaky') == [(1, 'error'), (2, 'pending')]
    first, retry = TaskRun.objects.filter(task_label='flaky').order_by('attempt')
    assert abs((retry.not_before - first.finished_at).total_seconds() - 30) < 1
    worker.tick(start + dt.timedelta(seconds=10))   # not yet due: nothing runs
    assert statuses('flaky') == [(1, 'error'), (2, 'pending')]
    worker.tick(retry.not_before + dt.timedelta(seconds=1))
    assert statuses('flaky') == [(1, 'error'), (2, 'error'), (3, 'pending')]
    third = TaskRun.objects.get(task_label='flaky', attempt=3)
    worker.tick(third.not_before + dt.timedelta(seconds=1))
    assert statuses('flaky') == [(1, 'error'), (2, 'error'), (3, 'error')]
    assert not Task.objects.filter(label='flaky').exists(), 'attempts used up: task deleted'


def test_a_retry_holds_back_the_next_slot_of_a_task_that_forbids_overlap(worker, soon):
    task = make('held', function=tasks.explode, schedule='* * * * *', retries=1,
                retry_delay=600)
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)
    worker.tick(soon + MINUTE)
    assert statuses('held') == [(1, 'error'), (2, 'pending')]


def test_a_lost_run_once_is_attempted_again_not_dropped(worker, soon):
    task = Task.run_once(tasks.record)
    die_while_running(worker, soon)
    later = soon + 2 * MINUTE
    worker.tick(later)
    label = task.label
    assert statuses(label) == [(1, 'lost'), (2, 'ok')]
    assert Call.objects.count() == 1
    assert not Task.objects.filter(pk=task.pk).exists()


def test_a_lost_one_off_job_gives_up_after_its_attempts(worker, soon):
    task = Task.run_once(tasks.record)
    when = soon
    for attempt in range(retries.FINAL_RUN_ATTEMPTS):
        die_while_running(worker, when)
        when += 2 * MINUTE
    worker.tick(when)
    assert [status for _, status in statuses(task.label)] == ['lost'] * 3
    assert not Task.objects.filter(pk=task.pk).exists()


def test_a_lost_run_of_a_recurring_task_is_not_retried_without_retries(worker, soon):
    task = make('recurring', schedule='* * * * *')
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    die_while_running(worker, soon)
    worker.tick(soon + 2 * MINUTE)
    assert statuses('recurring') == [(1, 'lost'), (1, 'ok')]


def test_a_task_marked_running_with_no_active_run_is_repaired_by_the_next_tick(worker, soon):
    task = make('stuck', schedule='* * * * *')
    Task.objects.filter(pk=task.pk).update(next_run=soon, running=True)   # as after a crash
    assert not TaskRun.objects.exists()
    worker.tick(soon)
    assert Call.objects.filter(label='stuck').count() == 1
    assert not Task.objects.get(pk=task.pk).running


def test_a_finished_one_off_left_running_is_repaired_and_reaped(worker, soon):
    task = Task.run_once(tasks.record)
    Task.objects.filter(pk=task.pk).update(running=True, next_run=None, finished_at=soon)
    TaskRun.objects.create(task=task, task_label=task.label, scheduled_for=soon, status='ok')
    worker.tick(soon)
    worker.deliver()
    assert not Task.objects.filter(pk=task.pk).exists()


def test_one_failing_claim_does_not_stop_the_others(worker, soon, monkeypatch, caplog):
    for label in ('a', 'b', 'c'):
        Task.objects.filter(pk=make(label).pk).update(next_run=soon)
    real_claim = lifecycle.claim

    def claim(batch, when):
        if any(task.label == 'b' for task in batch):
            raise OperationalError('deadlock detected')
        return real_claim(batch, when)

    monkeypatch.setattr(lifecycle, 'claim', claim)
    with caplog.at_level(logging.WARNING, logger='sisy'):
        assert len(dispatch.claim_due_tasks(soon)) == 2
    assert 'Could not claim task' in caplog.text and 'deadlock' in caplog.text
    monkeypatch.setattr(lifecycle, 'claim', real_claim)
    assert len(dispatch.claim_due_tasks(soon)) == 1, 'b is claimed by the next tick'


def test_a_timing_edit_racing_a_tick_cannot_hand_back_the_claimed_slot(soon):
    task = make('edited', schedule='* * * * *')
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    stale = Task.objects.get(pk=task.pk)                 # the admin loads the task...
    assert dispatch.claim_due_tasks(soon)                # ...a tick claims `soon`...
    stale.schedule = '*/1 * * * *'
    stale.start_running = soon - MINUTE                  # ...and the edit would reach back
    stale.save()
    assert stale.next_run > soon
    assert Task.objects.get(pk=task.pk).next_run > soon
    assert dispatch.claim_due_tasks(soon) == []          # the slot is not claimed twice


def test_a_finished_task_stays_finished_after_a_timing_edit(soon):
    task = Task.run_once(tasks.record)  # claims its only slot itself
    assert TaskRun.objects.filter(task=task, status=TaskRun.PENDING).exists()
    task = Task.objects.get(pk=task.pk)
    assert task.finished_at is not None and task.iterations == 1
    task.schedule = '* * * * *'
    task.wait_for_schedule = True
    task.save()
    task.refresh_from_db()
    assert task.next_run is None and task.finished_at is not None
    assert dispatch.claim_due_tasks(soon + 10 * MINUTE) == []


def test_a_follow_up_that_cannot_be_computed_costs_no_other_run_and_no_tick(worker, soon):
    # A retry delay too big to add to a date (rows saved before Sisy bounded it).
    bad = make('bad-delay', function=tasks.explode, schedule='* * * * *', retries=1)
    good = make('good', schedule='* * * * *')
    Task.objects.filter(pk=bad.pk).update(next_run=soon, retry_delay=1e12)
    Task.objects.filter(pk=good.pk).update(next_run=soon)
    worker.tick(soon)
    [failed] = TaskRun.objects.filter(task_label='bad-delay')
    assert failed.status == 'error' and 'boom from a test task' in failed.error
    assert 'could not record what follows this run' in failed.error
    assert 'OverflowError' in failed.error
    assert statuses('good') == [(1, 'ok')]
    worker.tick(soon + MINUTE)   # the task was left marked running: the tick repairs it
    assert statuses('good') == [(1, 'ok'), (1, 'ok')]
    assert statuses('bad-delay') == [(1, 'error'), (1, 'error')]


def test_a_lost_run_whose_follow_up_fails_does_not_stop_the_tick(worker, soon):
    bad = make('bad-delay', schedule='* * * * *', retries=1)
    Task.objects.filter(pk=bad.pk).update(next_run=soon, retry_delay=1e12)
    die_while_running(worker, soon)
    other = make('other', schedule='* * * * *')
    Task.objects.filter(pk=other.pk).update(next_run=soon + 2 * MINUTE)
    worker.tick(soon + 2 * MINUTE)
    [lost] = TaskRun.objects.filter(task_label='bad-delay', status='lost')
    assert 'stopped renewing its lease' in lost.error and 'OverflowError' in lost.error
    assert statuses('other') == [(1, 'ok')], 'the tick went on claiming after the lost run'


def test_a_run_whose_task_was_deleted_meanwhile_keeps_its_error_and_gets_no_retry(worker):
    make('deleted', function=tasks.delete_own_task_then_explode, wait_for_schedule=False,
         retries=2, retry_delay=1, iterations=1)
    worker.tick(timezone.now())
    [run] = TaskRun.objects.filter(task_label='deleted')
    assert run.status == 'error', 'recorded as it ended, not lost'
    assert 'failed after the task was deleted' in run.error
    assert run.task_id is None and not Task.objects.filter(label='deleted').exists()


def test_an_error_text_the_database_cannot_store_is_escaped_and_costs_no_neighbour(worker):
    make('undecodable', function=tasks.explode_with_undecodable_text, wait_for_schedule=False,
         iterations=1)
    make('neighbour', wait_for_schedule=False, iterations=1)
    worker.tick(timezone.now())
    run = TaskRun.objects.get(task_label='undecodable')
    assert run.status == 'error'
    assert 'cannot parse report-\\xff.csv ()' in run.error, run.error
    assert statuses('neighbour') == [(1, 'ok')]
    assert Call.objects.filter(label='neighbour').count() == 1


def test_one_ending_that_cannot_be_recorded_costs_the_batch_nothing(soon, monkeypatch):
    good = make('good', schedule='* * * * *', allow_overlap=True)
    bad = make('bad', schedule='* * * * *', allow_overlap=True)
    Task.objects.filter(pk__in=[good.pk, bad.pk]).update(next_run=soon)
    dispatch.claim_due_tasks(soon)
    runs = lifecycle.take(soon, MINUTE, 5)
    real_follow_up = lifecycle._follow_up

    def follow_up(endings, now):
        if any(ending.run.task_label == 'bad' for ending in endings):
            raise ValueError('a follow-up that cannot be written')
        return real_follow_up(endings, now)

    monkeypatch.setattr(lifecycle, '_follow_up', follow_up)
    ours = lifecycle.finish([lifecycle.Ending(run, 'ok', '', soon, soon) for run in runs])
    assert ours == {run.pk for run in runs}
    assert statuses('good') == [(1, 'ok')] and statuses('bad') == [(1, 'ok')]
    assert Task.objects.get(pk=good.pk).last_outcome == 'ok'
    assert 'a follow-up that cannot be written' in TaskRun.objects.get(task_label='bad').error


def test_a_finish_retried_after_an_outage_does_not_record_its_own_runs_again(soon, monkeypatch):
    mine = make('mine', schedule='* * * * *', allow_overlap=True)
    taken_away = make('taken-away', schedule='* * * * *', allow_overlap=True)
    Task.objects.filter(pk__in=[mine.pk, taken_away.pk]).update(next_run=soon)
    dispatch.claim_due_tasks(soon)
    runs = lifecycle.take(soon, MINUTE, 5)
    TaskRun.objects.filter(task_label='taken-away').update(status='lost')  # a tick's verdict
    real_late_finish, calls = lifecycle._record_late_finish, []

    def late_finish_meets_an_outage(*args):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError('server closed the connection unexpectedly')
        return real_late_finish(*args)

    monkeypatch.setattr(lifecycle, '_record_late_finish', late_finish_meets_an_outage)
    endings = [lifecycle.Ending(run, 'ok', '', soon, soon) for run in runs]
    with pytest.raises(OperationalError):
        lifecycle.finish(endings)    # 'mine' was committed before the outage
    ours = lifecycle.finish(endings)  # the worker's retry
    record = TaskRun.objects.get(task_label='mine')
    assert ours == {record.pk}, 'its own run is still reported as its own'
    assert record.status == 'ok' and record.error == '', record.error
    assert 'after this run had been recorded lost' in TaskRun.objects.get(
        task_label='taken-away').error
