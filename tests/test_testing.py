"""Test mode for users' test suites: run_due_tasks and SISY_ALWAYS_EAGER.

These tests run inside a transaction, as a user's Django TestCase does.
"""

import datetime as dt

import pytest
from channels import channel_layers
from django.core import checks
from django.test import TestCase, override_settings
from django.utils import timezone

from sisy import checks as sisy_checks
from sisy.models import Task, TaskRun, task_with_callable
from sisy.signals import run_finished
from sisy.testing import run_due_tasks
from tests.testapp import tasks
from tests.testapp.models import Call

pytestmark = pytest.mark.django_db
HOUR = dt.timedelta(hours=1)


# -- run_due_tasks ----------------------------------------------------------------------


def test_a_due_task_runs_here_and_its_run_is_returned(worker):
    task = Task.run_once(tasks.record, userdata={'to': 'ops'})
    [run] = run_due_tasks()
    assert isinstance(run, TaskRun)
    assert (run.status, run.task_label, run.attempt, run.error) == (
        'ok', task.label, 1, '')
    assert run.started_at is not None and run.duration >= 0 and run.task is None
    [call] = Call.objects.all()
    assert call.run_id == run.pk  # the function got a message naming its run
    assert not Task.objects.filter(pk=task.pk).exists()  # a finished one-off is deleted
    assert worker.pending('sisy.run_task') == []  # and no message was sent
    assert run_due_tasks() == []


def test_a_task_not_yet_due_does_not_run_until_its_time():
    later = timezone.now() + HOUR
    Task.run_once(tasks.record, delay_until=later)
    assert run_due_tasks() == []
    assert run_due_tasks(now=later - dt.timedelta(seconds=1)) == []
    assert Call.objects.count() == 0
    [run] = run_due_tasks(now=later)
    assert (run.status, run.scheduled_for) == ('ok', later)
    assert Call.objects.count() == 1


def test_a_recurring_task_runs_once_per_call_and_keeps_its_schedule():
    task = task_with_callable(tasks.count_in_userdata, schedule='0 3 * * *')
    task.save()
    slot = task.next_run
    [run] = run_due_tasks(now=slot)
    assert run.scheduled_for == slot and run.task == task
    task.refresh_from_db()
    zone = timezone.get_default_timezone()
    assert task.next_run.astimezone(zone).date() == slot.astimezone(zone).date() + \
        dt.timedelta(days=1)
    assert task.userdata == {'count': 1} and task.last_outcome == 'ok'
    assert run_due_tasks(now=slot) == []


def test_a_failing_task_returns_an_error_run():
    Task.run_once(tasks.explode)
    [run] = run_due_tasks()
    assert run.status == 'error'
    assert 'RuntimeError: boom from a test task' in run.error


def test_retries_run_when_their_delay_has_passed_by_now():
    task_with_callable(tasks.explode, label='flaky', schedule='* * * * * *', iterations=1,
                       wait_for_schedule=False, retries=2, retry_delay=60).save()
    [first] = run_due_tasks()
    assert (first.status, first.attempt) == ('error', 1)
    assert run_due_tasks() == []  # attempt 2 waits a minute
    later = run_due_tasks(now=timezone.now() + dt.timedelta(minutes=2))
    # Attempt 2 comes due at that time; attempt 3 is due a minute after it ends, which
    # is still before the time given, so it runs in the same call.
    assert [(run.attempt, run.status) for run in later] == [(2, 'error'), (3, 'error')]
    assert not Task.objects.filter(label='flaky').exists()


def test_a_retry_without_delay_runs_in_the_same_call():
    task_with_callable(tasks.explode, schedule='* * * * * *', iterations=1,
                       wait_for_schedule=False, retries=1, retry_delay=0).save()
    assert [run.attempt for run in run_due_tasks()] == [1, 2]


def test_runs_waiting_from_an_earlier_claim_run_too():
    Task.run_once(tasks.record)  # each claims its slot as it is saved
    Task.run_once(tasks.record)
    claimed = list(TaskRun.objects.order_by('pk').values_list('pk', flat=True))
    assert len(claimed) == 2
    assert [run.pk for run in run_due_tasks()] == claimed


def test_now_must_be_aware():
    with pytest.raises(ValueError, match='now must be an aware datetime'):
        run_due_tasks(now=dt.datetime(2030, 1, 1))


def test_no_channel_layer_is_needed(settings, monkeypatch):
    del settings.CHANNEL_LAYERS
    monkeypatch.setattr(channel_layers, 'backends', {})
    Task.run_once(tasks.record)
    [run] = run_due_tasks()
    assert run.status == 'ok', run.error
    assert Call.objects.get().run_id == run.pk


class RunDueTasksInATestCase(TestCase):
    """The shape the documentation shows."""

    def test_delayed_mail(self):
        when = timezone.now() + dt.timedelta(days=3)
        Task.run_once('tests.testapp.tasks.record', delay_until=when)
        self.assertEqual(run_due_tasks(), [])
        [run] = run_due_tasks(now=when)
        self.assertEqual(run.status, TaskRun.OK, run.error)
        self.assertEqual(Call.objects.count(), 1)


# -- SISY_ALWAYS_EAGER ----------------------------------------------------------------


@pytest.fixture
def eager(settings):
    settings.SISY_ALWAYS_EAGER = True


def test_not_eager_by_default():
    task = Task.run_once(tasks.record)
    # Claimed, waiting for a worker: nothing ran in this process.
    assert Call.objects.count() == 0
    assert list(TaskRun.objects.values_list('status', flat=True)) == [TaskRun.PENDING]
    assert Task.objects.filter(pk=task.pk).exists()


def test_eager_run_once_runs_at_once_and_the_task_is_gone(eager, worker):
    finished = []
    run_finished.connect(lambda sender, **arguments: finished.append(arguments['outcome']),
                         weak=False, dispatch_uid='test-eager')
    try:
        task = Task.run_once(tasks.record, userdata={'order': 1187})
    finally:
        run_finished.disconnect(dispatch_uid='test-eager')
    run = TaskRun.objects.get()
    assert (run.status, run.task_label, run.task_id) == ('ok', task.label, None)
    assert Call.objects.get().run_id == run.pk
    assert not Task.objects.filter(pk=task.pk).exists()
    assert (task.last_outcome, task.last_run, task.next_run) == ('ok', run.started_at, None)
    assert finished == ['ok']
    assert run_due_tasks() == []
    assert worker.pending('sisy.run_task') == []


def test_eager_run_iterations_runs_the_first_iteration_at_once(eager):
    task = Task.run_iterations(tasks.count_in_userdata, iterations=3, run_immediately=True,
                               schedule='0 3 * * *')
    [run] = TaskRun.objects.all()
    assert run.status == 'ok' and run.task_id == task.pk
    # The instance returned is the task as it stands after that run.
    assert (task.iterations, task.last_outcome, task.userdata) == (2, 'ok', {'count': 1})
    assert task.next_run > timezone.now() and task.next_run.astimezone(
        timezone.get_default_timezone()).hour == 3
    assert Task.objects.get(pk=task.pk).iterations == 2


def test_eager_mode_leaves_later_runs_to_their_time(eager):
    later = timezone.now() + HOUR
    task = Task.run_once(tasks.record, delay_until=later)
    waiting = Task.run_iterations(tasks.record, iterations=2, schedule='0 3 * * *')
    delayed = Task.run_iterations(tasks.record, iterations=2, run_immediately=True,
                                  delay_until=later)
    assert TaskRun.objects.count() == 0 and Call.objects.count() == 0
    assert Task.objects.filter(pk__in=[task.pk, waiting.pk, delayed.pk]).count() == 3
    assert len(run_due_tasks(now=later)) == 2  # the one-off and the delayed first run


def test_an_eager_failure_is_recorded_not_raised(eager):
    task = Task.run_once(tasks.explode)
    run = TaskRun.objects.get()
    assert run.status == 'error' and 'boom from a test task' in run.error
    assert task.last_outcome == 'error'


def test_an_eager_run_keeps_its_timeout(eager):
    started = timezone.now()
    Task.run_once(tasks.sleep_long, userdata={'seconds': 30}, timeout=0.3)
    assert timezone.now() - started < dt.timedelta(seconds=5)
    assert TaskRun.objects.get().status == 'timeout'


@pytest.mark.parametrize('value, ok', [(True, True), (False, True), (1, False),
                                       ('yes', False), (None, False)])
def test_the_eager_setting_is_checked(value, ok):
    with override_settings(SISY_ALWAYS_EAGER=value):
        problems = [problem for problem in sisy_checks.check_settings()
                    if problem.id == 'sisy.E009']
    assert bool(problems) != ok
    if problems:
        assert isinstance(problems[0], checks.Error)
        assert 'SISY_ALWAYS_EAGER=%r is not True or False' % (value,) in problems[0].msg
