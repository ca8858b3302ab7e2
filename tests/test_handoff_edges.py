"""Hand-off jobs (sisy.tasks) at the edges: values JSON cannot write, eager retries, transactions."""

import datetime as dt
import sys

import pytest
from django.db import connection, transaction
from django.utils import timezone

from sisy import lifecycle, runner
from sisy.models import Task, TaskRun
from sisy.tasks import TaskResultStatus
from tests.conftest import take_one
from tests.testapp import edge_jobs, jobs, tasks
from tests.testapp.models import Call

pytestmark = pytest.mark.django_db

LEASE = dt.timedelta(minutes=3)
needs_digit_limit = pytest.mark.skipif(
    not hasattr(sys, 'get_int_max_str_digits'), reason='this Python writes ints of any length')


def test_a_whole_number_json_cannot_write_is_refused_naming_the_argument():
    # numpy.int64 is a numbers.Integral that json.dumps refuses.
    with pytest.raises(TypeError, match="argument 'count'"):
        edge_jobs.record.enqueue(count=edge_jobs.Whole(2))
    assert TaskRun.objects.count() == 0


def test_a_returned_whole_number_json_cannot_write_fails_the_job_not_the_worker():
    result = edge_jobs.returns_a_whole.enqueue()
    assert runner.execute_run(int(result.id), None) == [TaskRun.ERROR]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert 'the return value' in result.errors[0].traceback


def test_eager_enqueue_runs_an_attempt_due_at_once_as_a_worker_would(settings, worker):
    # fail_once: retries=1, retry_delay=0. A worker is rung for the second attempt
    # when the first fails, and run_due_tasks runs it in the same call; eager mode
    # returned the job READY with that attempt left waiting.
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.fail_once.enqueue('eager')
    assert (result.status, result.attempts, result.return_value) == (
        TaskResultStatus.SUCCESSFUL, 2, 'second time lucky')
    assert worker.pending('sisy.run_task') == [], 'nothing is left for a worker'


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize('make', [lambda: jobs.add.enqueue(1, 2),
                                  lambda: Task.run_once(tasks.record)],
                         ids=['enqueue', 'run_once'])
def test_a_run_made_under_manual_transaction_management_is_rung_for_once_committed(
        make, worker):
    # transaction.on_commit() refuses to work after set_autocommit(False); enqueue
    # raised that into its caller, after writing the job.
    if connection.features.autocommits_when_autocommit_is_off:
        pytest.skip('Django 1.11 on SQLite cannot save a row without autocommit')
    transaction.set_autocommit(False)
    try:
        make()
        assert worker.pending('sisy.run_task') == [], 'nothing is rung before the commit'
        transaction.commit()
    except BaseException:
        transaction.rollback()
        raise
    finally:
        transaction.set_autocommit(True)
    assert worker.deliver() == 1
    assert TaskRun.objects.get().status == TaskRun.OK


@pytest.mark.django_db(transaction=True)
def test_jobs_waiting_together_start_highest_priority_first(worker):
    # Each doorbell named its own job, and a worker took the named job first, so
    # the first job enqueued ran first whatever the priorities of the others waiting.
    with transaction.atomic():
        jobs.label_call.using(priority=-10).enqueue('low')
        jobs.label_call.enqueue('middle')
        jobs.label_call.using(priority=10).enqueue('high')
    worker.deliver()
    assert list(Call.objects.order_by('pk').values_list('label', flat=True)) == [
        'high', 'middle', 'low']


def test_a_late_finish_of_a_jobs_last_attempt_keeps_its_return_value():
    # A job's last allowed attempt is recorded lost (its worker paused past the
    # lease); the worker then finishes it after all, and the late finish is written.
    result = jobs.add.enqueue(20, 22)
    for attempt in range(3):
        run = take_one(timezone.now(), LEASE)
        TaskRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - LEASE)
        lifecycle.lose_expired(timezone.now())
    assert run.attempt == 3 and not TaskRun.objects.filter(status=TaskRun.PENDING).exists()
    lifecycle.finish([lifecycle.Ending(run, TaskRun.OK, '', run.started_at, timezone.now(),
                                       None, '42')])
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_eager_enqueue_records_a_database_error_of_the_job_inside_a_test_case(settings):
    # Django's TestCase (and this test) runs inside a transaction. The job's refused
    # INSERT left it unusable, so recording the failure raised
    # TransactionManagementError into the test instead of a FAILED result.
    settings.SISY_ALWAYS_EAGER = True
    result = edge_jobs.breaks_a_unique_key.enqueue('twice')
    assert result.status == TaskResultStatus.FAILED
    assert 'IntegrityError' in result.errors[0].traceback
    assert Task.objects.count() == 0, 'the test transaction is still usable'


@needs_digit_limit
def test_a_whole_number_too_long_for_python_to_write_is_refused_naming_the_argument():
    # Python (3.9.14 on, 3.11) writes no int of more than 4300 digits as text by default,
    # so json.dumps raised its own ValueError, naming no argument.
    with pytest.raises(TypeError, match="argument 'count'"):
        edge_jobs.record.enqueue(count=10 ** 5000)
    assert TaskRun.objects.count() == 0


@needs_digit_limit
def test_a_returned_whole_number_too_long_to_write_fails_the_job_not_the_worker():
    result = edge_jobs.returns_a_huge_number.enqueue()
    assert runner.execute_run(int(result.id), None) == [TaskRun.ERROR]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert 'the return value' in result.errors[0].traceback
