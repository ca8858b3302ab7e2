"""Signals: what is sent when, with what, and that a receiver cannot break a run."""

import datetime as dt
import json
import logging

import pytest
from channels import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.message import Message
from django.db import connection
from django.utils import timezone

from sisy import dispatch, lifecycle
from sisy.models import Task, TaskRun, task_with_callable
from sisy.runner import execute_run
from sisy.signals import run_finished, run_started, task_disabled
from sisy.testing import run_due_tasks
from tests.testapp import tasks
from tests.testapp.models import Call


@pytest.fixture
def heard():
    """Connect a recording receiver to each of Sisy's signals; yield what they heard."""
    events = []

    def listener(name):
        def receive(sender, signal, **arguments):
            if 'run' in arguments:  # the run object changes later: note its state now
                arguments['run_status'] = arguments['run'].status
            events.append((name, arguments))
        return receive

    receivers = [(signal, listener(name)) for signal, name in (
        (run_started, 'started'), (run_finished, 'finished'), (task_disabled, 'disabled'))]
    for signal, receiver in receivers:
        signal.connect(receiver)
    yield events
    for signal, receiver in receivers:
        signal.disconnect(receiver)


@pytest.fixture
def raising():
    """Connect receivers that raise to all three signals (before any others)."""
    def receiver(sender, **arguments):
        raise RuntimeError('a broken receiver')

    for signal in (run_started, run_finished, task_disabled):
        signal.connect(receiver)
    yield receiver
    for signal in (run_started, run_finished, task_disabled):
        signal.disconnect(receiver)


def claimed_run(function, label, **fields):
    """Save a task due now, claim it as a tick would; return the pending run's id."""
    task_with_callable(function, label=label, wait_for_schedule=False, **fields).save()
    [run_id] = dispatch.claim_due_tasks(timezone.now())
    return run_id


def ring(run_id):
    """Execute run `run_id` as a worker receiving the tick's run message would."""
    layer = channel_layers[DEFAULT_CHANNEL_LAYER]
    return execute_run(run_id, Message({'run_id': run_id}, 'sisy.run_task', layer))


def names(events):
    return [name for name, _ in events]


@pytest.mark.django_db(transaction=True)
class TestOnTheWorker:

    def test_a_run_is_announced_before_the_call_and_after_its_record(self, heard):
        run_id = claimed_run(tasks.record, 'ok-task')
        assert ring(run_id) == ['ok']
        assert names(heard) == ['started', 'finished']
        started, finished = heard[0][1], heard[1][1]
        assert started['task'].label == 'ok-task'
        assert (started['run'].pk, started['run_status']) == (run_id, 'running')
        assert started['run'].started_at is not None
        assert finished['task'] is started['task']
        assert (finished['outcome'], finished['error']) == ('ok', '')
        assert finished['run'].status == 'ok' and finished['run'].finished_at is not None
        assert finished['duration'] == finished['run'].duration >= 0
        assert TaskRun.objects.get(pk=run_id).duration == pytest.approx(finished['duration'])

    def test_a_failing_run_comes_with_its_traceback(self, heard):
        run_id = claimed_run(tasks.explode, 'failing')
        ring(run_id)
        finished = heard[-1][1]
        assert finished['outcome'] == 'error'
        assert 'RuntimeError: boom from a test task' in finished['error']
        assert finished['error'] == TaskRun.objects.get(pk=run_id).error

    def test_a_timeout_is_announced_as_one(self, heard):
        run_id = claimed_run(tasks.sleep_long, 'sleeper', timeout=0.3,
                             userdata={'seconds': 30})
        ring(run_id)
        assert names(heard) == ['started', 'finished']
        assert heard[-1][1]['outcome'] == 'timeout'
        assert 'timeout of 0.3 s' in heard[-1][1]['error']

    def test_raising_receivers_leave_the_run_and_the_worker_alone(self, raising, heard,
                                                                  caplog):
        ok_run = claimed_run(tasks.record, 'fine')
        assert ring(ok_run) == ['ok']
        bad_run = claimed_run(tasks.explode, 'failing')
        assert ring(bad_run) == ['error']
        assert TaskRun.objects.get(pk=ok_run).status == 'ok'
        assert Call.objects.filter(label='fine').count() == 1
        assert TaskRun.objects.get(pk=bad_run).status == 'error'
        assert not Task.objects.get(label='fine').running
        # Receivers connected after the broken one still hear everything.
        assert names(heard) == ['started', 'finished'] * 2
        failures = [record for record in caplog.records if record.name == 'sisy.signals']
        assert len(failures) == 4
        assert all(record.levelno == logging.ERROR for record in failures)
        assert 'sisy.signals.run_started raised' in failures[0].getMessage()
        assert 'tests.test_signals' in failures[0].getMessage()
        assert 'RuntimeError: a broken receiver' in caplog.text  # the traceback is logged

    def test_a_function_that_cannot_be_loaded_disables_its_task_once(self, heard):
        run_id = claimed_run(tasks.record, 'gone')
        info = {'module': 'tests.testapp.tasks', 'qualname': 'removed_function',
                'kind': 'function'}
        task = Task.objects.get(label='gone')
        Task.objects.filter(pk=task.pk).update(_func_info=json.dumps(info))
        assert ring(run_id) == ['error']
        assert names(heard) == ['disabled', 'finished']
        disabled = heard[0][1]
        assert (disabled['task_id'], disabled['label']) == (task.pk, 'gone')
        assert "has no attribute 'removed_function'" in disabled['reason']
        assert Task.objects.get(pk=task.pk).disabled_reason == disabled['reason']
        assert heard[1][1]['outcome'] == 'error'
        # Disabling a task that is already disabled announces nothing.
        lifecycle.disable(task.pk, 'again')
        assert names(heard) == ['disabled', 'finished']

    def test_an_invalid_schedule_is_announced_when_the_tick_disables_the_task(self, heard):
        task = task_with_callable(tasks.record, label='bad-schedule', wait_for_schedule=False)
        task.save()
        Task.objects.filter(pk=task.pk).update(schedule='61 * * * *')
        assert dispatch.claim_due_tasks(timezone.now()) == []
        [(name, disabled)] = heard
        assert (name, disabled['task_id'], disabled['label']) == (
            'disabled', task.pk, 'bad-schedule')
        assert disabled['reason'].startswith('Invalid schedule:')

    def test_a_skipped_run_is_finished_without_being_started(self, heard):
        run_id = claimed_run(tasks.record, 'switched-off')
        Task.objects.filter(label='switched-off').update(enabled=False)
        assert ring(run_id) == ['skipped']
        [(name, finished)] = heard
        assert (name, finished['outcome'], finished['duration']) == ('finished', 'skipped',
                                                                     None)
        assert finished['task'].label == 'switched-off'
        assert finished['error'] == 'The task was disabled before the run started.'

    def test_a_lost_run_is_announced_by_the_tick_that_records_it(self, heard):
        run_id = claimed_run(tasks.record, 'dies')
        long_ago = timezone.now() - dt.timedelta(hours=1)
        TaskRun.objects.filter(pk=run_id).update(status='running', started_at=long_ago,
                                                 lease_until=long_ago, host='gone', pid=1)
        assert lifecycle.lose_expired(timezone.now()) == 1
        [(name, finished)] = heard
        assert (name, finished['outcome'], finished['run'].pk) == ('finished', 'lost', run_id)
        assert finished['task'].label == 'dies'
        assert 'stopped renewing its lease' in finished['error']


@pytest.mark.django_db
def test_in_a_test_transaction_a_receivers_database_error_spoils_nothing(caplog):
    """In a TestCase everything is one transaction; PostgreSQL aborts it on any error."""
    def broken_query(sender, **arguments):
        with connection.cursor() as cursor:
            cursor.execute('SELECT no_such_column FROM no_such_table')

    Task.run_once(tasks.record)
    Task.run_once(tasks.explode)
    run_started.connect(broken_query)
    run_finished.connect(broken_query)
    try:
        runs = run_due_tasks()
    finally:
        run_started.disconnect(broken_query)
        run_finished.disconnect(broken_query)
    assert sorted(run.status for run in runs) == ['error', 'ok']
    assert Call.objects.count() == 1
    assert not Task.objects.exists()  # both one-offs finished and were deleted
    assert caplog.text.count('tests.test_signals.') >= 4


@pytest.mark.django_db
def test_nobody_listening_costs_no_statement(django_assert_num_queries):
    Task.run_once(tasks.count_in_userdata)
    with django_assert_num_queries(0):
        run_started.send_safely(TaskRun, task=None, run=None)
        run_finished.send_safely(TaskRun, task=None, run=None, outcome='ok', duration=0,
                                 error='')


@pytest.mark.django_db
def test_disable_reads_the_label_only_for_a_listener(django_assert_num_queries):
    quiet = task_with_callable(tasks.record, label='unheard')
    quiet.save()
    with django_assert_num_queries(1):
        lifecycle.disable(quiet.pk, 'nobody listens')
    heard = []

    def receiver(sender, signal, **arguments):
        heard.append(arguments)

    task = task_with_callable(tasks.record, label='labelled')
    task.save()
    task_disabled.connect(receiver)
    try:
        lifecycle.disable(task.pk, 'checked by hand')
    finally:
        task_disabled.disconnect(receiver)
    assert heard == [{'task_id': task.pk, 'label': 'labelled', 'reason': 'checked by hand'}]
