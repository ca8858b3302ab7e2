"""Several dispatchers handling the same tick at once, with real row locks (PostgreSQL)."""

import threading

import pytest
from django.db import connection
from django.db.models import Count

from sisy import dispatch
from sisy.models import Task, TaskRun, task_with_callable
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
