"""Hand-off jobs (sisy.tasks): what a user of @task, enqueue and TaskResult sees.

The jobs live in tests/testapp/jobs.py. Most tests run the worker's own code
in this process with run_due_tasks, as a user's test suite would.
"""

import datetime as dt
import decimal
import json
import os
import threading
import time
import traceback

import pytest
from channels.message import Message
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from sisy import dispatch, lifecycle, runner
from sisy.models import TaskRun
from sisy.results import exception_class_path
from sisy.signals import run_finished, run_started
from sisy.tasks import (
    InvalidTask, Task, TaskResult, TaskResultDoesNotExist, TaskResultMismatch,
    TaskResultStatus, task)
from sisy.testing import run_due_tasks
from tests.testapp import jobs
from tests.testapp import tasks as cron_functions
from tests.testapp.models import Call

# Real commits: the worker's code runs here, and its watchdog thread must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = dt.timedelta(minutes=1)
WORKER_ID = '%s pid %s' % (lifecycle.HOST, os.getpid())


@pytest.fixture(autouse=True)
def empty_layer(worker):
    """Enqueue rings on the shared in-memory layer: leave it as each test found it, empty."""
    yield
    worker.layer.channel_layer.flush()


def wait_for(predicate, timeout=10, message='condition'):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % message
        time.sleep(0.02)


# -- enqueue, arguments and TaskResult ------------------------------------------------


def test_enqueue_stores_the_call_and_a_worker_makes_it_with_the_same_arguments():
    result = jobs.add.enqueue(2, b=3)
    assert isinstance(result, TaskResult)
    assert isinstance(result.id, str) and result.id == str(TaskRun.objects.get().pk)
    assert (result.status, result.args, result.kwargs) == (TaskResultStatus.READY, [2], {'b': 3})
    assert Call.objects.count() == 0, 'enqueue must not run the function here'
    [run] = run_due_tasks()
    assert (run.status, run.function, run.task_id) == ('ok', 'tests.testapp.jobs:add', None)
    assert Call.objects.get().run_id == 5
    assert result.status == TaskResultStatus.READY, 'a TaskResult changes only on refresh()'
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


def test_arguments_and_return_values_come_back_as_json_data():
    arguments = ['ünïcode', None, True, 2 ** 70, 0.25, [1, [2, {'deep': 'x'}]]]
    result = jobs.echo.enqueue(*arguments, mapping={'a': {'b': [None]}}, empty={})
    run_due_tasks()
    result.refresh()
    assert result.return_value == {'args': arguments,
                                   'kwargs': {'mapping': {'a': {'b': [None]}}, 'empty': {}}}
    assert jobs.echo.get_result(result.id).args == arguments


def test_tuples_are_stored_and_passed_as_lists():
    result = jobs.echo.enqueue((1, 2), pair={'t': (3, (4,))})
    assert (result.args, result.kwargs) == ([[1, 2]], {'pair': {'t': [3, [4]]}})
    run_due_tasks()
    result.refresh()
    assert result.return_value == {'args': [[1, 2]], 'kwargs': {'pair': {'t': [3, [4]]}}}


def test_a_result_before_its_job_ran_has_no_times_attempts_or_value():
    result = jobs.add.enqueue(1, 1)
    assert result.enqueued_at is not None
    assert result.enqueued_at <= timezone.now()
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None,) * 3
    assert (result.attempts, result.errors, result.worker_ids) == (0, [], [])
    with pytest.raises(ValueError, match='has no return value: it is READY'):
        result.return_value


def test_a_result_while_its_job_runs_is_running():
    result = jobs.add.enqueue(1, 1)
    lifecycle.take(timezone.now(), MINUTE)  # a worker took it and is running it
    result.refresh()
    assert (result.status, result.attempts, result.worker_ids) == (
        TaskResultStatus.RUNNING, 1, [WORKER_ID])
    assert result.started_at is not None and result.finished_at is None
    with pytest.raises(ValueError, match='it is RUNNING'):
        result.return_value


def test_a_result_tells_every_attempt_its_error_and_its_times():
    result = jobs.fail_once.enqueue('k')
    run_due_tasks()  # attempt 1 fails; attempt 2, due at once, runs in the same call
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.SUCCESSFUL, 2)
    assert result.return_value == 'second time lucky'
    [error] = result.errors
    assert error.exception_class_path == 'builtins.ValueError'
    assert error.traceback.startswith('Traceback (most recent call last):')
    assert 'ValueError: first attempt of k fails' in error.traceback
    assert result.enqueued_at <= result.started_at < result.last_attempted_at
    assert result.last_attempted_at <= result.finished_at <= timezone.now()
    assert result.worker_ids == [WORKER_ID, WORKER_ID]
    assert result.id == str(TaskRun.objects.get(attempt=1).pk)
    assert jobs.fail_once.get_result(result.id).attempts == 2


def test_a_job_that_fails_every_attempt_is_failed_with_each_error():
    result = jobs.always_fails.enqueue()
    run_due_tasks()
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 3)  # 1 + retries=2
    assert [error.exception_class_path for error in result.errors] == ['builtins.KeyError'] * 3
    assert all("KeyError: 'never works'" in error.traceback for error in result.errors)
    assert result.finished_at is not None
    with pytest.raises(ValueError, match='it is FAILED'):
        result.return_value
    assert run_due_tasks(now=timezone.now() + dt.timedelta(days=1)) == [], 'no 4th attempt'


def test_an_error_whose_message_has_several_lines_is_named_by_its_class():
    result = jobs.fails_with_details.enqueue()
    run_due_tasks()
    result.refresh()
    [error] = result.errors
    assert error.exception_class_path == 'tests.testapp.jobs.DatabaseSaid'
    assert 'DETAIL:  Key (id)=(1) already exists.' in error.traceback


def test_a_chained_error_is_named_by_the_exception_raised_last():
    try:
        try:
            {}['missing']
        except KeyError:
            raise jobs.DatabaseSaid('could not save\nHINT:  retry later')
    except jobs.DatabaseSaid:
        recorded = traceback.format_exc()
    assert exception_class_path(recorded) == 'tests.testapp.jobs.DatabaseSaid'
    assert exception_class_path('The worker (gone pid 1) stopped renewing its lease.') == \
        'sisy.runner.RunInterrupted'


def test_statuses_compare_equal_to_djangos_strings():
    assert [status.value for status in TaskResultStatus] == [
        'READY', 'RUNNING', 'SUCCESSFUL', 'FAILED']
    for status in TaskResultStatus:
        assert status == status.value and str(status) == status.value
        assert json.dumps(status) == '"%s"' % status.value
    assert TaskResultStatus('SUCCESSFUL') is TaskResultStatus.SUCCESSFUL


# -- priorities, queues, using() ------------------------------------------------------


@pytest.mark.parametrize('priority', [True, 1.0, 1.5, 101, -101, '5', decimal.Decimal(1)])
def test_a_priority_that_is_not_a_whole_number_from_minus_100_to_100_is_refused(priority):
    with pytest.raises(InvalidTask, match='priority must be a whole number from -100 to 100') \
            as refused:
        task(priority=priority)(jobs.add.func)
    assert 'got %r' % (priority,) in str(refused.value)
    with pytest.raises(InvalidTask) as refused:
        jobs.add.using(priority=priority)
    assert 'got %r' % (priority,) in str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert TaskRun.objects.count() == 0


@pytest.mark.parametrize('priority', [-100, 0, 100])
def test_the_ends_of_the_priority_range_are_accepted(priority):
    result = jobs.add.using(priority=priority).enqueue(1, 1)
    assert TaskRun.objects.get(pk=result.id).priority == priority


def executed_in_order(worker):
    """Let one worker drain the table; return the labels of the runs in the order it ran them."""
    doorbell = Message({'run_id': 0}, 'sisy.run_task', worker.layer)
    runner.execute_run(0, doorbell)  # no run 0: it takes the first in line, then the rest
    return list(Call.objects.order_by('pk').values_list('label', flat=True))


def test_higher_priorities_are_taken_first_among_waiting_jobs(worker):
    jobs.label_call.using(priority=-10).enqueue('low')
    jobs.label_call.enqueue('default-1')
    jobs.label_call.using(priority=50).enqueue('high-1')
    jobs.label_call.enqueue('default-2')
    jobs.label_call.using(priority=50).enqueue('high-2')
    assert executed_in_order(worker) == ['high-1', 'high-2', 'default-1', 'default-2', 'low']


def test_cron_runs_carry_their_tasks_priority_and_wait_in_line_with_jobs(soon, worker):
    from sisy.models import Task, task_with_callable
    for label, priority in (('background', -5), ('urgent', 10)):
        task_with_callable(cron_functions.record, label=label, priority=priority).save()
    Task.objects.update(next_run=soon)
    jobs.label_call.using(priority=5).enqueue('job')
    assert len(dispatch.claim_due_tasks(soon)) == 2
    assert dict(TaskRun.objects.filter(task__isnull=False).values_list('task_label', 'priority')) \
        == {'background': -5, 'urgent': 10}
    assert executed_in_order(worker) == ['urgent', 'job', 'background']


def test_using_returns_a_changed_copy_and_leaves_the_task_as_it_was():
    later = timezone.now() + dt.timedelta(hours=1)
    with override_settings(SISY_QUEUES=['default', 'emails']):
        changed = jobs.add.using(priority=7, queue_name='emails', run_after=later)
        assert isinstance(changed, Task) and changed is not jobs.add
        assert (changed.priority, changed.queue_name, changed.run_after) == (7, 'emails', later)
        assert (jobs.add.priority, jobs.add.queue_name, jobs.add.run_after) == (0, 'default', None)
        assert changed.using(priority=1).queue_name == 'emails'  # what is not given is kept
        waiting, plain = changed.enqueue(1, 2), jobs.add.enqueue(1, 2)
    rows = TaskRun.objects.in_bulk([int(waiting.id), int(plain.id)])
    assert (rows[int(waiting.id)].priority, rows[int(waiting.id)].queue_name,
            rows[int(waiting.id)].not_before) == (7, 'emails', later)
    assert (rows[int(plain.id)].priority, rows[int(plain.id)].queue_name,
            rows[int(plain.id)].not_before) == (0, 'default', None)


def test_a_bad_option_in_using_leaves_the_task_usable():
    with pytest.raises(InvalidTask):
        jobs.add.using(priority=500)
    assert jobs.add.priority == 0
    assert jobs.add.enqueue(1, 1).status == TaskResultStatus.READY


def test_a_queue_workers_do_not_serve_is_refused():
    with pytest.raises(InvalidTask, match="queue_name 'emails' is not one of SISY_QUEUES"):
        jobs.add.using(queue_name='emails')
    with pytest.raises(InvalidTask, match="queue_name 'emails' is not one of SISY_QUEUES"):
        task(queue_name='emails')(jobs.add.func)
    with pytest.raises(InvalidTask, match='it names a channel'):
        jobs.add.using(queue_name='e mails')
    with override_settings(SISY_QUEUES=['default', 'emails']):
        result = jobs.add.using(queue_name='emails').enqueue(1, 1)
    assert TaskRun.objects.get(pk=result.id).queue_name == 'emails'
    assert TaskRun.objects.count() == 1


# -- run_after ------------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['timedelta', 'aware datetime'])
def test_a_job_with_run_after_waits_for_its_time(kind):
    start = timezone.now()
    when = start + 5 * MINUTE
    run_after = 5 * MINUTE if kind == 'timedelta' else when
    result = jobs.add.using(run_after=run_after).enqueue(1, 2)
    not_before = TaskRun.objects.get().not_before
    assert abs(not_before - when) < dt.timedelta(seconds=5)
    assert runner.execute_run(int(result.id) + 1, None) == [], 'a worker takes it before its time'
    assert run_due_tasks() == []
    assert run_due_tasks(now=not_before - dt.timedelta(seconds=1)) == []
    result.refresh()
    assert (result.status, Call.objects.count()) == (TaskResultStatus.READY, 0)
    [run] = run_due_tasks(now=not_before)
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 3)


@pytest.mark.parametrize('run_after', [dt.datetime(2030, 1, 1, 12, 0), '2030-01-01T12:00Z', 300])
def test_a_naive_or_unknown_run_after_is_refused(run_after):
    with pytest.raises(InvalidTask, match='run_after must be an aware datetime or a timedelta'):
        jobs.add.using(run_after=run_after)


# -- call() and get_result() ----------------------------------------------------------


def test_call_runs_the_function_here_and_returns_its_value():
    assert jobs.add.call(2, b=5) == 7
    assert Call.objects.get().run_id == 7
    assert TaskRun.objects.count() == 0


def test_a_task_called_like_a_function_fails_loudly_instead_of_running_in_the_request():
    with pytest.raises(TypeError):
        jobs.add(1, 2)
    assert Call.objects.count() == 0 and TaskRun.objects.count() == 0


def test_get_result_finds_a_job_by_its_id():
    result = jobs.add.enqueue(4, 4)
    run_due_tasks()
    found = jobs.add.get_result(result.id)
    assert (found.id, found.status, found.return_value, found.args) == (
        result.id, TaskResultStatus.SUCCESSFUL, 8, [4, 4])
    assert jobs.add.get_result(int(result.id)).id == result.id


@pytest.mark.parametrize('job_id', ['999999', 999999, 'abc', None, ''])
def test_get_result_of_an_unknown_id_raises_does_not_exist(job_id):
    jobs.add.enqueue(1, 1)
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(job_id)


def test_get_result_of_another_functions_job_is_a_mismatch():
    result = jobs.add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch) as mismatch:
        jobs.echo.get_result(result.id)
    assert 'tests.testapp.jobs.add' in str(mismatch.value)
    assert 'tests.testapp.jobs.echo' in str(mismatch.value)


def test_get_result_finds_neither_a_cron_run_nor_a_later_attempt_by_its_own_id():
    from sisy.models import Task
    Task.run_once(cron_functions.record)
    cron_run = TaskRun.objects.get()
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(cron_run.pk)
    result = jobs.fail_once.enqueue('x')
    run_due_tasks()
    second = TaskRun.objects.get(function__endswith='fail_once', attempt=2)
    with pytest.raises(TaskResultDoesNotExist):
        jobs.fail_once.get_result(second.pk)
    assert jobs.fail_once.get_result(result.id).attempts == 2


# -- takes_context --------------------------------------------------------------------


def test_a_context_gives_the_job_its_result_id_and_attempt():
    result = jobs.with_context.enqueue('hello')
    run_due_tasks()
    result.refresh()
    assert result.return_value == {'attempt': 1, 'job': result.id}
    assert Call.objects.get().label == 'context:hello'


def test_a_retry_gets_the_next_attempt_number_and_the_errors_so_far():
    result = jobs.context_fails_once.enqueue('k')
    run_due_tasks()
    result.refresh()
    assert result.return_value == {'attempt': 2, 'job': result.id, 'status': 'RUNNING',
                                   'errors': ['builtins.RuntimeError']}


def test_call_gives_a_context_of_attempt_1_with_no_result():
    with pytest.raises(RuntimeError, match='attempt 1 of k fails'):
        jobs.context_fails_once.call('k')
    assert jobs.describe_context.call() == {
        'attempt': 1, 'has_result': False, 'repr': '<TaskContext job None attempt 1>'}
    result = jobs.describe_context.enqueue()
    run_due_tasks()
    result.refresh()
    assert result.return_value == {'attempt': 1, 'has_result': True,
                                   'repr': '<TaskContext job %s attempt 1>' % result.id}


# -- what enqueue refuses -------------------------------------------------------------


class Point:
    pass


def contains_itself():
    items = [1]
    items.append(items)
    return items


def nested(levels):
    value = 'bottom'
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize('args, kwargs, says', [
    ((), {'when': dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)},
     "argument 'when' is a datetime.datetime"),
    (({1, 2},), {}, 'positional argument 0 is a set'),
    ((1, Point()), {}, 'positional argument 1 is a tests.test_tasks.Point'),
    ((), {'ids': {1: 'a'}}, "argument 'ids' has the key 1 (an int)"),
    ((), {'by_pair': {(1, 2): 'a'}}, "argument 'by_pair' has the key (1, 2) (a tuple)"),
    ((), {'ratio': float('nan')}, "argument 'ratio' is nan"),
    ((), {'total': float('inf')}, "argument 'total' is inf"),
    ((contains_itself(),), {}, 'positional argument 0[1] contains itself'),
    ((), {'order': {'lines': [1, {'price': decimal.Decimal('9.99')}]}},
     "argument 'order'['lines'][1]['price'] is a decimal.Decimal"),
    ((nested(150),), {}, 'nested deeper than 100 levels'),
    ((b'bytes',), {}, 'positional argument 0 is a bytes'),
])
def test_what_json_cannot_carry_is_refused_before_anything_is_written(args, kwargs, says, worker):
    with pytest.raises(TypeError) as refused:
        jobs.echo.enqueue(*args, **kwargs)
    assert says in str(refused.value)
    assert 'JSON' in str(refused.value) or 'nested' in str(refused.value)
    assert TaskRun.objects.count() == 0
    assert worker.pending('sisy.run_task') == []


def test_a_return_value_json_cannot_carry_fails_the_job_with_a_type_error():
    result = jobs.returns_a_set.enqueue()
    run_due_tasks()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == 'builtins.TypeError'
    assert 'the return value is a set ({1, 2}), which JSON cannot carry' in error.traceback


def test_a_function_a_worker_cannot_import_is_refused_at_enqueue():
    def inner(x):
        return x

    nested = task(inner)
    with pytest.raises(InvalidTask, match='define it at module level'):
        nested.enqueue(1)
    assert TaskRun.objects.count() == 0
    assert nested.call(3) == 3


def test_a_job_whose_function_was_removed_since_it_was_enqueued_fails_saying_so():
    result = jobs.add.enqueue(1, 1)
    TaskRun.objects.filter(pk=result.id).update(function='tests.testapp.jobs:removed')
    run_due_tasks()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == 'sisy.callables.CallableNotFound'
    assert "has no attribute 'removed'" in error.traceback


# -- retries, timeout, lost workers, stop ---------------------------------------------


def test_a_retry_waits_its_retry_delay():
    result = jobs.fail_once_then_wait.enqueue('k')
    run_due_tasks()
    result.refresh()
    assert (result.status, result.attempts, len(result.errors)) == (
        TaskResultStatus.READY, 1, 1)  # waiting for its next attempt
    retry = TaskRun.objects.get(attempt=2)
    first = TaskRun.objects.get(attempt=1)
    assert abs((retry.not_before - first.finished_at).total_seconds() - 300) < 5
    assert run_due_tasks(now=retry.not_before - dt.timedelta(seconds=1)) == []
    run_due_tasks(now=retry.not_before)
    result.refresh()
    assert (result.status, result.attempts, result.return_value) == (
        TaskResultStatus.SUCCESSFUL, 2, 'waited')


def test_a_job_past_its_timeout_is_interrupted_and_failed():
    started = time.monotonic()
    result = jobs.too_slow.enqueue()
    run_due_tasks()
    assert time.monotonic() - started < 4, 'the timeout of 0.2 s was not enforced'
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert TaskRun.objects.get().status == TaskRun.TIMEOUT
    [error] = result.errors
    assert error.exception_class_path == 'sisy.runner.RunInterrupted'
    assert 'timeout of 0.2 s' in error.traceback


def die_while_running(worker, when):
    """A worker takes the waiting runs and dies: their leases ended a minute ago by any clock."""
    lifecycle.take(when, MINUTE, limit=10)
    worker.layer.channel_layer.flush()
    TaskRun.objects.filter(status=TaskRun.RUNNING).update(
        lease_until=timezone.now() - MINUTE, host='gone', pid=1)


def test_a_job_lost_with_its_worker_is_attempted_again(worker, soon):
    result = jobs.add.enqueue(20, 22)
    die_while_running(worker, soon)
    worker.tick(soon + 2 * MINUTE)  # the tick finds it lost; the retry runs
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL, 42, 2)
    [error] = result.errors
    assert error.exception_class_path == 'sisy.runner.RunInterrupted'
    assert 'stopped renewing its lease' in error.traceback
    assert result.worker_ids == ['gone pid 1', WORKER_ID]
    assert Call.objects.count() == 1


def test_a_job_lost_on_every_attempt_ends_failed_with_a_finish_time(worker, soon):
    result = jobs.add.enqueue(1, 1)
    when = soon
    for attempt in range(3):
        die_while_running(worker, when)
        when += 2 * MINUTE
        dispatch.process_tick(when, now=when)
        worker.layer.channel_layer.flush()
    result.refresh()
    assert (result.status, result.attempts, len(result.errors)) == (
        TaskResultStatus.FAILED, 3, 3)
    assert result.finished_at is not None, 'a failed job has finished'
    assert TaskRun.objects.filter(status=TaskRun.PENDING).count() == 0


def test_an_operator_can_stop_a_job_and_it_is_not_retried(monkeypatch):
    monkeypatch.setattr(runner, 'MAX_RENEWAL_INTERVAL', 0.3)  # notice the stop sooner
    cron_functions.sleeping.clear()
    result = jobs.sleeps.enqueue(60)
    job_id = int(result.id)

    def stop():
        wait_for(cron_functions.sleeping.is_set, timeout=30, message='the job to start')

        def asked():
            try:
                return lifecycle.request_stop([job_id]) == 1
            except OperationalError:  # the in-memory database's shared cache is locked
                return False
        wait_for(asked, message='the stop to be recorded')

    stopper = threading.Thread(target=stop)
    stopper.start()
    started = time.monotonic()
    run_due_tasks()
    stopper.join()
    assert time.monotonic() - started < 20
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)  # retries=2 unused
    assert TaskRun.objects.get().status == TaskRun.STOPPED
    [error] = result.errors
    assert 'an operator asked to stop it' in error.traceback


# -- signals, eager mode, run_due_tasks -----------------------------------------------


def test_run_started_and_run_finished_are_sent_for_jobs_with_no_task():
    heard = []

    def receiver(sender, signal, **arguments):
        heard.append((signal, arguments['task'], arguments['run'].pk, arguments['run'].status,
                      arguments.get('outcome')))

    for signal in (run_started, run_finished):
        signal.connect(receiver)
    try:
        result = jobs.add.enqueue(1, 2)
        run_due_tasks()
    finally:
        for signal in (run_started, run_finished):
            signal.disconnect(receiver)
    job_id = int(result.id)
    assert heard == [(run_started, None, job_id, TaskRun.RUNNING, None),
                     (run_finished, None, job_id, TaskRun.OK, TaskRun.OK)]


def test_eager_mode_runs_the_job_before_enqueue_returns(settings, worker):
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.add.enqueue(2, 3)
    assert (result.status, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL, 5, 1)
    assert Call.objects.get().run_id == 5
    assert worker.pending('sisy.run_task') == [], 'nothing is left for a worker'
    assert run_due_tasks() == []


def test_eager_mode_records_a_failure_instead_of_raising_it(settings):
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.fails_with_details.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == 'tests.testapp.jobs.DatabaseSaid'


def test_eager_mode_leaves_a_job_with_run_after_to_its_time(settings):
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 1)
    assert result.status == TaskResultStatus.READY and Call.objects.count() == 0
    [run] = run_due_tasks(now=timezone.now() + dt.timedelta(hours=2))
    assert run.status == TaskRun.OK


def test_eager_mode_runs_a_job_whose_run_after_has_passed(settings):
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.add.using(run_after=timezone.now() - MINUTE).enqueue(1, 1)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 2)


def test_run_due_tasks_runs_waiting_jobs_and_returns_their_runs(worker):
    first, second = jobs.add.enqueue(1, 1), jobs.label_call.enqueue('second')
    runs = run_due_tasks()
    assert [run.pk for run in runs] == [int(first.id), int(second.id)]
    assert [(run.status, run.function) for run in runs] == [
        ('ok', 'tests.testapp.jobs:add'), ('ok', 'tests.testapp.jobs:label_call')]
    assert json.loads(runs[1].return_value) == 'second'
    assert run_due_tasks() == []


def test_run_due_tasks_runs_jobs_in_the_order_workers_take_them():
    jobs.label_call.using(priority=-1).enqueue('low')
    jobs.label_call.enqueue('default')
    jobs.label_call.using(priority=9).enqueue('high')
    assert [json.loads(run.return_value) for run in run_due_tasks()] == [
        'high', 'default', 'low']


def test_eager_mode_runs_the_retries_due_now_and_leaves_delayed_ones(settings):
    settings.SISY_ALWAYS_EAGER = True
    result = jobs.fail_once.enqueue('eager')  # retries=1, retry_delay=0
    assert (result.status, result.attempts, result.return_value) == (
        TaskResultStatus.SUCCESSFUL, 2, 'second time lucky')
    result = jobs.fail_once_then_wait.enqueue('delayed')  # retries=1, retry_delay=300
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 1)
    run_due_tasks(now=timezone.now() + dt.timedelta(minutes=6))
    result.refresh()
    assert (result.status, result.attempts, result.return_value) == (
        TaskResultStatus.SUCCESSFUL, 2, 'waited')
