"""The worker side: a run's lease, its timeout, an operator's stop, a lost lease."""

import contextlib
import datetime as dt
import logging
import threading
import time

import pytest
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.utils import timezone

from sisy import dispatch, lifecycle, runner
from sisy.models import Task, TaskRun, task_with_callable
from sisy.runner import RunBatch, execute_run, lease_length
from tests.conftest import finish_run
from tests.testapp import tasks
from tests.testapp.models import Counter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures('sql_path')]

SHORT_LEASE = dt.timedelta(seconds=0.6)


def wait_for(predicate, timeout=10, message='condition'):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % message
        time.sleep(0.02)


def test_lease_is_three_heartbeats_but_at_least_ten_seconds(settings):
    settings.SISY_HEARTBEAT_FREQUENCY = 60
    assert lease_length() == dt.timedelta(seconds=180)
    settings.SISY_HEARTBEAT_FREQUENCY = 1
    assert lease_length() == dt.timedelta(seconds=10)


def running_run(label='long'):
    start = timezone.now()
    task = task_with_callable(tasks.record, label=label)
    task.save()
    return TaskRun.objects.create(task=task, task_label=label, scheduled_for=start,
                                  status='running', started_at=start, lease_until=start)


def lease(run):
    return TaskRun.objects.get(pk=run.pk).lease_until


@contextlib.contextmanager
def watched(run, timeout=None):
    """Hold `run` as a worker does while its function executes."""
    with RunBatch(SHORT_LEASE, None) as batch, batch.watch(run, timeout) as watch:
        with watch.interruptible():
            yield watch


def test_lease_is_renewed_while_the_function_runs_and_not_after():
    run = running_run()
    first = lease(run)
    with watched(run):
        wait_for(lambda: lease(run) > first, message='a renewal')
    renewed = lease(run)
    time.sleep(2 * SHORT_LEASE.total_seconds())  # renewals are 0.2 s apart: none may follow
    assert lease(run) == renewed


def test_lease_renewal_goes_on_after_a_database_error(monkeypatch, caplog):
    failures = []
    renew = lifecycle.renew

    def flaky_renew(run_ids, until):
        if not failures:
            failures.append(1)
            raise OperationalError('database is locked')
        return renew(run_ids, until)

    monkeypatch.setattr(lifecycle, 'renew', flaky_renew)
    run = running_run()
    first = lease(run)
    with watched(run):
        wait_for(lambda: lease(run) > first, message='a renewal after the error')
    assert failures == [1]
    assert 'The watchdog could not reach the database' in caplog.text


class DatabaseDown:
    """While `down` is set, recording runs fails as with the database away; counts the tries."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(runner.Watchdog, 'outage_since', None, raising=False)
        self.down, self.failed, finish = threading.Event(), [], lifecycle.finish

        def finish_unless_down(endings):
            if self.down.is_set() and endings:
                self.failed.append(time.monotonic())
                raise OperationalError('server closed the connection unexpectedly')
            return finish(endings)

        monkeypatch.setattr(lifecycle, 'finish', finish_unless_down)


def test_the_watchdog_logs_a_database_outage_once_when_it_starts_and_once_when_it_ends(
        monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger='sisy.runner')
    database = DatabaseDown(monkeypatch)
    run = running_run()
    database.down.set()
    with RunBatch(lease_length(), None) as batch:
        # An ending waits for its record: the watchdog tries to write it every round.
        batch.record(lifecycle.Ending(run, TaskRun.OK, '', run.started_at, timezone.now()))
        wait_for(lambda: len(database.failed) >= 8, message='eight failed rounds of the watchdog')
        database.down.clear()
        wait_for(lambda: not batch.endings, message='the ending recorded by the watchdog')
    lines = [r for r in caplog.records if r.name == 'sisy.runner' and r.levelno >= logging.INFO]
    assert [r.getMessage().split(':')[0].split(',')[0] for r in lines] == [
        'The watchdog could not reach the database',
        'The watchdog reaches the database again']
    assert 'server closed the connection unexpectedly' in lines[0].getMessage()
    assert TaskRun.objects.get(pk=run.pk).status == TaskRun.OK


def test_the_watchdog_says_the_database_is_back_even_when_its_batch_ended_first(
        monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger='sisy.runner')
    database = DatabaseDown(monkeypatch)
    run = running_run()
    database.down.set()
    with RunBatch(lease_length(), None) as batch:
        batch.record(lifecycle.Ending(run, TaskRun.OK, '', run.started_at, timezone.now()))
        wait_for(lambda: len(database.failed) >= 2, message='two failed rounds of the watchdog')
        database.down.clear()  # the batch's own thread records the ending as it ends
    wait_for(lambda: 'The watchdog reaches the database again' in caplog.text,
             message='the line saying the outage is over')
    assert caplog.text.count('The watchdog could not reach the database') == 1
    assert TaskRun.objects.get(pk=run.pk).status == TaskRun.OK


# A worker host's clock this far off the others' (libfaketime showed it at 20 s).
SKEW = dt.timedelta(seconds=30)
DATABASE_CLOCK_ONLY = 'leases are on the database clock on PostgreSQL only'


def held_for(skew, lease, monkeypatch):
    """How long a run stays held after a worker whose clock is `skew` off took and renewed it.

    Lost-run recovery runs meanwhile on a host whose clock is right, and on one
    as far off the other way.
    """
    task = task_with_callable(tasks.record, label='skewed', wait_for_schedule=False)
    task.save()
    [run_id] = lifecycle_claim(task)
    batch = RunBatch(lease, None)  # the worker's side, without its watchdog thread
    real_now = timezone.now
    with monkeypatch.context() as worker_clock:
        worker_clock.setattr(timezone, 'now', lambda: real_now() + skew)
        assert batch.take(run_id) == 1
        renewed = time.monotonic()
        batch._renew(renewed)
    while True:
        held = time.monotonic() - renewed
        assert held < lease.total_seconds() + 10, 'still held %.1f s after its renewal' % held
        if lifecycle.lose_expired(timezone.now()) or lifecycle.lose_expired(timezone.now() - skew):
            assert TaskRun.objects.get(pk=run_id).status == 'lost'
            return time.monotonic() - renewed
        time.sleep(0.05)


@pytest.mark.parametrize('skew', [-SKEW, SKEW], ids=['slow', 'fast'])
def test_a_lease_lasts_its_length_whatever_the_clock_of_the_worker_that_holds_it(
        skew, monkeypatch):
    if connection.vendor != 'postgresql':
        pytest.skip(DATABASE_CLOCK_ONLY)
    lease = dt.timedelta(seconds=2)
    held = held_for(skew, lease, monkeypatch)
    assert lease.total_seconds() <= held < lease.total_seconds() + 5, held


def run_task(label, function, **fields):
    """Save a task for `function`, claim its slot and execute the run here; return the run."""
    task = task_with_callable(function, label=label, wait_for_schedule=False, **fields)
    task.save()
    [run_id] = lifecycle_claim(task)
    execute_run(run_id, message=None)
    return TaskRun.objects.get(pk=run_id)


def lifecycle_claim(task):
    from sisy import dispatch
    return dispatch.claim_due_tasks(timezone.now())


def test_a_run_past_its_timeout_is_interrupted_and_recorded(caplog):
    started = time.monotonic()
    run = run_task('sleeper', tasks.sleep_long, timeout=0.5, userdata={'seconds': 60})
    took = time.monotonic() - started
    assert run.status == 'timeout', run.error
    assert 'RunInterrupted' in run.error and 'timeout of 0.5 s' in run.error
    assert took < 5, 'the worker was not freed promptly (%.1f s)' % took
    # The function's own clean-up ran (finally blocks still run when interrupted).
    assert Task.objects.get(label='sleeper').userdata.get('cleaned_up') is True
    assert Task.objects.get(label='sleeper').last_outcome == 'timeout'


def test_an_except_exception_in_the_function_does_not_swallow_the_timeout():
    run = run_task('stubborn', tasks.busy_loop_catching_exceptions, timeout=0.5)
    assert run.status == 'timeout', run.error


def test_a_timeout_in_a_worker_thread_interrupts_the_function():
    """runworker --threads runs consumers in threads: no signals there, the same result."""
    task = task_with_callable(tasks.busy_loop_catching_exceptions, label='threaded',
                              wait_for_schedule=False, timeout=0.5)
    task.save()
    [run_id] = lifecycle_claim(task)
    thread = threading.Thread(target=execute_run, args=(run_id, None))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert TaskRun.objects.get(pk=run_id).status == 'timeout'


def test_an_operator_can_stop_a_running_run():
    task = task_with_callable(tasks.sleep_long, label='to-stop', wait_for_schedule=False,
                              userdata={'seconds': 60})
    task.save()
    [run_id] = lifecycle_claim(task)
    tasks.sleeping.clear()
    asked = []
    stopper = threading.Thread(target=stop_when_sleeping, args=(run_id, asked))
    stopper.start()
    [outcome] = execute_run(run_id, message=None)
    ended = time.monotonic()
    stopper.join()
    run = TaskRun.objects.get(pk=run_id)
    assert outcome == run.status == 'stopped'
    assert 'an operator asked to stop it' in run.error
    # Noticed at the next lease renewal, not when the function's 60 s are up.
    assert ended - asked[0] < runner.MAX_RENEWAL_INTERVAL + 5


def stop_when_sleeping(run_id, asked):
    """The operator's side, from another thread, once the function itself is running.

    The in-memory test database's shared cache reports 'table is locked' at
    times across threads: try again then. Notes when the stop was recorded.
    """
    def stopped():
        try:
            return lifecycle.request_stop([run_id]) == 1
        except OperationalError:
            return False
    wait_for(tasks.sleeping.is_set, timeout=60, message='the function to start')
    wait_for(stopped, message='the stop request to be recorded')
    asked.append(time.monotonic())


def test_a_worker_that_lost_its_lease_interrupts_the_function_and_records_the_truth():
    """As after SIGSTOP: the tick recorded the run lost; the resumed worker must give way."""
    run = running_run('paused')
    outcome = {}

    def function_running():
        try:
            with watched(run) as watch:
                time.sleep(30)
        except runner.RunInterrupted:
            outcome['interruption'] = watch.interruption
        finish_run(run, watch.interruption.outcome, 'interrupted')

    TaskRun.objects.filter(pk=run.pk).update(status='lost')  # the tick's verdict
    started = time.monotonic()
    function_running()
    assert time.monotonic() - started < 5
    assert outcome['interruption'].outcome == 'lost'
    record = TaskRun.objects.get(pk=run.pk)
    assert 'after this run had been recorded lost' in record.error


@pytest.mark.parametrize('module, error', [('broken_module', 'NameError'),
                                           ('syntax_error_module', 'SyntaxError')])
def test_a_function_whose_module_cannot_be_imported_disables_the_task_with_the_traceback(
        module, error):
    task = task_with_callable(tasks.record, label='broken-module', wait_for_schedule=False)
    task._func_info = '{"kind": "function", "module": "tests.testapp.%s", ' \
                      '"qualname": "anything"}' % module
    task.save()
    [run_id] = lifecycle_claim(task)
    assert execute_run(run_id, message=None) == ['error']
    run = TaskRun.objects.get(pk=run_id)
    task.refresh_from_db()
    assert run.status == 'error' and error in run.error and 'Traceback' in run.error
    assert not task.enabled and error in task.disabled_reason
    assert not task.running


def test_a_passing_database_error_loading_an_instance_is_a_run_error_not_a_disabled_task(
        monkeypatch):
    counter = Counter.objects.create(name='c')
    task = task_with_callable(counter.bump, label='instance', wait_for_schedule=False,
                              retries=1, retry_delay=60)
    task.save()
    real_get = QuerySet.get

    def get(queryset, *args, **kwargs):
        if queryset.model is Counter:
            raise OperationalError('canceling statement due to lock timeout')
        return real_get(queryset, *args, **kwargs)

    monkeypatch.setattr(QuerySet, 'get', get)
    [run_id] = lifecycle_claim(task)
    assert execute_run(run_id, message=None) == ['error']
    task.refresh_from_db()
    assert task.enabled and task.disabled_reason == ''
    assert 'lock timeout' in TaskRun.objects.get(pk=run_id).error
    monkeypatch.setattr(QuerySet, 'get', real_get)
    retry = TaskRun.objects.get(task=task, attempt=2)
    assert execute_run(retry.pk, message=None) == ['ok'], 'the retry runs once the lock is free'
    assert Counter.objects.get(pk=counter.pk).hits == 1


def test_a_function_that_leaves_its_connection_broken_costs_the_recording_no_wait(caplog):
    if connection.vendor != 'postgresql':
        pytest.skip('needs real concurrent transactions: run with SISY_TEST_DATABASE=postgresql')
    task = task_with_callable(tasks.break_own_connection_quietly, label='breaker',
                              wait_for_schedule=False)
    task.save()
    [run_id] = lifecycle_claim(task)
    with caplog.at_level(logging.WARNING, logger='sisy'):
        assert execute_run(run_id, message=None) == ['ok']
    assert TaskRun.objects.get(pk=run_id).status == 'ok'
    assert 'Cannot record runs' not in caplog.text, 'recorded through a fresh connection'


def in_a_thread(function, *args):
    try:
        function(*args)
    finally:
        connection.close()  # this thread's own session


def status_of(run_id):
    try:
        return TaskRun.objects.filter(pk=run_id).values_list('status', flat=True).first()
    except OperationalError:  # the in-memory database's shared cache, across threads
        return None


def test_runs_held_behind_a_slow_run_are_recorded_or_given_back(soon, monkeypatch, caplog):
    """A batch must not hide finished runs, nor hold back runs another worker could start."""
    monkeypatch.setattr(runner.RunBatch, 'pace', 1e-4)  # quick so far: batches are big
    caplog.set_level(logging.INFO, logger='sisy.runner')
    labels = ('named', 'quick', 'slow', 'behind')
    for label in labels:
        function = tasks.run_until_released if label == 'slow' else tasks.count_in_userdata
        task_with_callable(function, label=label).save()
    Task.objects.update(next_run=soon)
    named, quick, slow, behind = dispatch.claim_due_tasks(soon)
    tasks.sleeping.clear()
    tasks.released.clear()
    with reads_that_lock_nothing():
        worker = threading.Thread(target=in_a_thread, args=(execute_run, named, None))
        worker.start()
        try:
            wait_for(tasks.sleeping.is_set, timeout=60, message='the slow function to start')
            # 'quick' ended before 'slow' began: its outcome is recorded while 'slow' runs on.
            wait_for(lambda: status_of(quick) == 'ok', timeout=60,
                     message='the quick run to be recorded during the slow one')
            wait_for(lambda: status_of(behind) == 'pending', timeout=60,
                     message='the run behind the slow one to be given back')
            assert status_of(slow) == 'running'
        finally:
            tasks.released.set()
        worker.join(60)
        assert not worker.is_alive()
    assert [status_of(run_id) for run_id in (named, quick, slow)] == ['ok'] * 3
    assert 'Gave back 1 run(s)' in caplog.text
    assert execute_run(behind, None) == ['ok']


@contextlib.contextmanager
def reads_that_lock_nothing():
    """On the in-memory SQLite test database (a shared cache), this thread's reads would
    lock tables and make the worker's writes fail; read without locks meanwhile."""
    if connection.vendor != 'sqlite':
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute('PRAGMA read_uncommitted = true')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute('PRAGMA read_uncommitted = false')


def test_a_worker_holds_no_run_it_has_not_started_once_its_runs_are_recorded(soon, monkeypatch):
    """A worker killed just after recording its runs leaves no other run to be recorded lost."""
    held_when_recorded = []

    def checkpoint(point, run):  # where a fault test kills the worker
        if point == 'recorded':
            held_when_recorded.append((run.task_label, sorted(TaskRun.objects.filter(
                status=TaskRun.RUNNING).values_list('task_label', flat=True))))

    monkeypatch.setattr(runner, 'checkpoint', checkpoint)
    for label in ('first', 'second', 'third'):
        task_with_callable(tasks.count_in_userdata, label=label).save()
    Task.objects.update(next_run=soon)
    first, _, _ = dispatch.claim_due_tasks(soon)
    assert execute_run(first, None) == ['ok'] * 3
    assert held_when_recorded == [('first', []), ('second', []), ('third', [])]


@contextlib.contextmanager
def holding_two_runs(soon, monkeypatch):
    """A worker's batch that has taken two quick runs and started neither."""
    monkeypatch.setattr(runner.RunBatch, 'pace', 1e-4)
    for label in ('first', 'second'):
        task_with_callable(tasks.count_in_userdata, label=label).save()
    Task.objects.update(next_run=soon)
    run_ids = dispatch.claim_due_tasks(soon)
    with RunBatch(dt.timedelta(seconds=60), None) as batch:
        batch.size = 2
        assert batch.take() == 2
        yield batch, run_ids


def test_a_run_stopped_before_it_started_is_recorded_stopped_and_never_called(soon, monkeypatch):
    with holding_two_runs(soon, monkeypatch) as (batch, (first, second)):
        lifecycle.request_stop([second])
        with batch.lock:
            batch._renew(time.monotonic())  # what the watchdog does every few seconds
        assert [run.pk for run in batch.queue] == [first]
    # Leaving without executing: the run not started goes back to the table.
    assert status_of(first) == 'pending'
    stopped = TaskRun.objects.get(pk=second)
    assert stopped.status == 'stopped' and 'before it started' in stopped.error
    assert Task.objects.get(label='second').userdata == {}
    assert not Task.objects.get(label='second').running


def test_a_stop_asked_for_a_run_that_was_then_given_back_is_kept(soon, monkeypatch):
    """The worker that takes it next records it stopped rather than starting it."""
    with holding_two_runs(soon, monkeypatch) as (batch, (first, second)):
        lifecycle.request_stop([second])
    # Left without executing or renewing: both runs went back to the table.
    assert [status_of(first), status_of(second)] == ['pending', 'pending']
    # 'first' is first in line, then 'second', named by the message, from the table.
    assert execute_run(second, None) == ['ok', 'stopped']
    stopped = TaskRun.objects.get(pk=second)
    assert stopped.status == 'stopped' and 'before it started' in stopped.error
    assert stopped.started_at is None  # as when the first worker had recorded it
    assert Task.objects.get(label='second').userdata == {}
    assert Task.objects.get(label='first').userdata == {'count': 1}


def test_runs_stay_held_when_giving_them_back_fails(soon, monkeypatch):
    """A passing database error must not strand runs that are in no queue."""
    give_back = lifecycle.give_back

    def failing_once(run_ids):
        monkeypatch.setattr(lifecycle, 'give_back', give_back)
        raise OperationalError('server closed the connection unexpectedly')

    monkeypatch.setattr(lifecycle, 'give_back', failing_once)
    with holding_two_runs(soon, monkeypatch) as (batch, (first, second)):
        with batch.lock, pytest.raises(OperationalError):
            batch._give_back('a test')
        assert [run.pk for run in batch.queue] == [first, second]
    assert [status_of(first), status_of(second)] == ['pending', 'pending']


def test_a_timeout_is_not_enforced_once_the_function_has_returned():
    """What follows the function is Sisy's own code: never interrupt it."""
    run = running_run()
    with RunBatch(dt.timedelta(seconds=60), None) as batch, batch.watch(run, 0.01) as watch:
        with watch.interruptible():
            pass
        watch.check(time.monotonic() + 60)
        assert watch.interruption is None
