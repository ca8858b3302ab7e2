"""Several dispatchers handling the same tick at once, with real row locks (PostgreSQL)."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import Count

from sisy import dispatch, doorbells, lifecycle
from sisy.models import Task, TaskRun, task_with_callable
from tests.conftest import finish_run, take_one
from tests.testapp import tasks
from tests.testapp.models import Call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures('sql_path')]


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != 'postgresql':
        pytest.skip('needs real concurrent transactions: run with SISY_TEST_DATABASE=postgresql')


def run_together(count, target):
    """Start `count` threads on `target` at the same moment; return their results."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def body():
        try:
            barrier.wait()
            results.append(target())
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_concurrent_dispatchers_claim_each_slot_once(worker, soon):
    info = task_with_callable(tasks.record)._func_info
    Task.objects.bulk_create([Task(label='t%d' % n, _func_info=info, next_run=soon)
                              for n in range(300)])
    results = run_together(4, lambda: dispatch.process_tick(soon))
    claimed = [run_id for result in results for run_id in result]
    assert len(claimed) == len(set(claimed)) == 300
    per_task = TaskRun.objects.values('task').annotate(runs=Count('pk'))
    assert {row['runs'] for row in per_task} == {1} and len(per_task) == 300
    worker.deliver()
    assert Call.objects.count() == 300
    assert Call.objects.values('label').distinct().count() == 300


def test_concurrent_workers_run_a_duplicated_message_once(worker, soon):
    task = task_with_callable(tasks.record, label='once')
    task.save()
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    dispatch.claim_due_tasks(soon)
    run_id = TaskRun.objects.get().pk

    class Message:
        content = {'run_id': run_id}

    from sisy.runner import execute_run
    outcomes = run_together(4, lambda: execute_run(run_id, Message()))
    assert sorted(outcomes) == [[], [], [], ['ok']]  # one ran it; three found nothing
    assert Call.objects.filter(label='once').count() == 1


def test_the_last_slot_claimed_while_a_run_finishes_still_runs(worker, soon):
    """A run finishing while a tick claims the task's last slot leaves `running` False.

    The finishing run's release waits on the claim's row lock and then writes
    what its own snapshot saw (no run active). The reaper must still see the
    pending last run and leave the task alone until it has run.
    """
    task = task_with_callable(tasks.record, label='overlapping', allow_overlap=True,
                              iterations=2)
    task.save()
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    dispatch.claim_due_tasks(soon)
    first = take_one(soon, dt.timedelta(minutes=5))
    worker.layer.channel_layer.flush()
    last_slot = soon + dt.timedelta(minutes=1)
    finished = []

    def finish_the_first_run():
        try:
            finished.append(finish_run(first, TaskRun.OK, now=last_slot))
        finally:
            connection.close()

    finisher = threading.Thread(target=finish_the_first_run)
    with transaction.atomic():
        due = list(Task.objects.due(last_slot).only(*lifecycle.CLAIM_COLUMNS))
        assert len(lifecycle.claim(due, last_slot)) == 1
        finisher.start()
        wait_until_blocked_by_this_transaction()
    finisher.join(10)
    assert finished == [True]
    task.refresh_from_db()
    assert task.finished_at is not None and task.running is False  # the race happened
    assert TaskRun.objects.filter(status=TaskRun.PENDING).count() == 1
    dispatch.send_finished_to_reaper()
    worker.deliver()  # the reaper first, then the last run
    doorbells.ring(last_slot, 1)
    worker.deliver()
    assert list(TaskRun.objects.order_by('pk').values_list('status', flat=True)) == ['ok', 'ok']
    assert Call.objects.filter(label='overlapping').count() == 1
    assert not Task.objects.exists()


def wait_until_blocked_by_this_transaction(seconds=10):
    """Return once another session waits on a lock this session holds."""
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute('SELECT count(*) FROM pg_locks WHERE NOT granted '
                           'AND pg_backend_pid() = ANY(pg_blocking_pids(pid))')
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError('no other session waited on this one within %s s' % seconds)


def test_two_runs_of_a_finished_task_ending_together_both_record_their_outcome(worker, soon):
    """The last run's finish deletes the task; another run ending meanwhile cannot break it.

    The run ending in between the unlinking of the runs and the deletion of the
    task (where those were two statements) left a run pointing at a deleted
    task, and the last run's ending failed on the foreign key.
    """
    task = task_with_callable(tasks.record, label='overlapping', allow_overlap=True,
                              iterations=2)
    task.save()
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    dispatch.claim_due_tasks(soon)
    dispatch.claim_due_tasks(soon + dt.timedelta(minutes=1))  # the last slot
    first, last = lifecycle.take(soon, dt.timedelta(minutes=5), 2)
    between, go, results = threading.Event(), threading.Event(), []

    def pause_after_unlinking(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('UPDATE %s SET task_id = NULL' % TaskRun._meta.db_table):
            between.set()
            go.wait(10)
        return result

    def finish_the_last_run():
        try:
            with connection.execute_wrapper(pause_after_unlinking):
                results.append(finish_run(last, TaskRun.OK))
        except Exception as error:  # reported by the assertion below
            results.append(error)
        finally:
            connection.close()

    finisher = threading.Thread(target=finish_the_last_run)
    finisher.start()
    deadline = time.monotonic() + 10
    while not between.is_set() and finisher.is_alive() and time.monotonic() < deadline:
        between.wait(0.01)
    assert finish_run(first, TaskRun.OK)
    go.set()
    finisher.join(10)
    assert results == [True]
    assert list(TaskRun.objects.order_by('pk').values_list('status', flat=True)) == ['ok', 'ok']
    worker.tick(soon + dt.timedelta(minutes=2))  # the reaper deletes it if nobody did
    assert not Task.objects.exists()
    assert not TaskRun.objects.filter(task__isnull=False).exists()
