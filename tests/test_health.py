"""sisy_health and the admin's health banner: each problem in words, and a healthy site."""

import datetime as dt
import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, InterfaceError
from django.test import Client, override_settings
from django.utils import timezone

from sisy import health
from sisy.models import Task, TaskRun, TickRecord, task_with_callable
from tests.testapp import jobs, tasks

pytestmark = pytest.mark.django_db


def run_health(*args):
    """(exit status, stdout, stderr lines) of `manage.py sisy_health *args`."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command('sisy_health', *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, out.getvalue(), err.getvalue().splitlines()


def problems_of(*args):
    """The problem lines of a sisy_health run that must find problems."""
    status, out, err = run_health(*args)
    assert (status, out) == (2, ''), (status, out, err)
    return err


def ticked(seconds_ago, worker='web-1 pid 10'):
    now = timezone.now()
    TickRecord.objects.update_or_create(worker=worker, defaults={
        'tick': now - dt.timedelta(seconds=seconds_ago),
        'processed_at': now - dt.timedelta(seconds=seconds_ago)})


def make(label, **fields):
    task = task_with_callable(tasks.record, label=label, schedule='* * * * *', **fields)
    task.save()
    return task


def add_run(task, status, seconds_ago=0, **fields):
    """A run of `task` claimed `seconds_ago` seconds ago."""
    when = timezone.now() - dt.timedelta(seconds=seconds_ago)
    run = TaskRun.objects.create(task=task, task_label=task.label, scheduled_for=when,
                                 status=status, **fields)
    TaskRun.objects.filter(pk=run.pk).update(created_at=when)
    return run


def enqueued(job, seconds_ago, *args, **options):
    """A hand-off job of `job` enqueued `seconds_ago` seconds ago (`options` go to using())."""
    run_id = int((job.using(**options) if options else job).enqueue(*args).id)
    when = timezone.now() - dt.timedelta(seconds=seconds_ago)
    TaskRun.objects.filter(pk=run_id).update(created_at=when, scheduled_for=when)
    return run_id


def failed_runs(task, *statuses):
    """Finished runs of `task` with these statuses, oldest first; the task's last outcome."""
    for status in statuses:
        add_run(task, status, started_at=timezone.now(), duration=1.0)
    Task.objects.filter(pk=task.pk).update(last_outcome=statuses[-1], last_run=timezone.now())


def test_a_healthy_site_exits_0_and_says_so():
    ticked(4)
    make('nightly')
    status, out, err = run_health()
    assert (status, err) == (0, [])
    assert re.match(r'Sisy is healthy: last tick [45] s ago; 0 waiting\.\n$', out), out


@override_settings(SISY_HEARTBEAT_FREQUENCY=1)
def test_no_tick_for_three_periods():
    ticked(47)
    assert problems_of() == ['no tick processed for 47 s (3 heartbeat periods is 3 s)']
    ticked(2, worker='web-2 pid 11')  # another worker is alive: the newest tick counts
    assert run_health()[0] == 0


def test_no_tick_ever():
    assert problems_of() == ['no tick processed yet: is sisy_heartbeat running, and a worker '
                             'on the channel sisy.heartbeat?']


def test_runs_waiting_too_long():
    ticked(1)
    task = make('busy', allow_overlap=True)
    for _ in range(12):
        add_run(task, TaskRun.PENDING, seconds_ago=95)
    add_run(task, TaskRun.PENDING, seconds_ago=20)  # not late yet
    now = timezone.now()
    add_run(task, TaskRun.PENDING, seconds_ago=300, attempt=2,  # a retry, due 30 s ago
            not_before=now - dt.timedelta(seconds=30))
    add_run(task, TaskRun.PENDING, seconds_ago=300, attempt=2,  # still in its retry delay
            not_before=now + dt.timedelta(seconds=30))
    assert problems_of('--max-wait', '60') == [
        "12 runs waiting longer than 60 s in queue 'default' (oldest 95 s)"]
    status, out, _ = run_health('--max-wait', '120')
    assert status == 0
    assert 'last tick 1 s ago; 14 waiting (oldest 95 s), 1 waiting to retry.' in out


def test_waiting_hand_off_jobs_are_counted_in_the_summary():
    ticked(1)
    task = make('busy', allow_overlap=True)
    add_run(task, TaskRun.PENDING, seconds_ago=95)
    enqueued(jobs.add, 40, 1, 2)
    enqueued(jobs.add, 5, 3, 4)
    enqueued(jobs.add, 5, 5, 6, run_after=dt.timedelta(minutes=5))
    status, out, _ = run_health()
    assert status == 0
    assert out == ('Sisy is healthy: last tick 1 s ago; 3 waiting (oldest 95 s), 2 of them '
                   'hand-off jobs (oldest 40 s), 1 hand-off job due later (run_after).\n')


def test_a_job_waits_from_its_run_after_time():
    ticked(1)
    now = timezone.now()
    enqueued(jobs.add, 600, 1, 2, run_after=now - dt.timedelta(seconds=90))
    enqueued(jobs.add, 600, 3, 4, run_after=now - dt.timedelta(seconds=30))
    enqueued(jobs.add, 600, 5, 6, run_after=now + dt.timedelta(seconds=30))
    assert problems_of('--max-wait', '60') == [
        "1 hand-off job waiting longer than 60 s in queue 'default' (oldest 90 s)"]


@override_settings(SISY_QUEUES=['default', 'emails', 'reports'])
def test_late_runs_are_reported_per_queue_naming_the_channel_to_serve():
    ticked(1)
    add_run(make('nightly'), TaskRun.PENDING, seconds_ago=95)
    for seconds_ago in (300, 200):
        enqueued(jobs.add, seconds_ago, 1, 2, queue_name='emails')
    enqueued(jobs.add, 10, 1, 2, queue_name='emails')  # not late yet
    reports = make('report', queue_name='reports', allow_overlap=True)
    add_run(reports, TaskRun.PENDING, seconds_ago=500, queue_name='reports')
    enqueued(jobs.add, 150, 1, 2, queue_name='reports')
    enqueued(jobs.add, 500, 1, 2, queue_name='reports',  # in its run_after time still
             run_after=dt.timedelta(seconds=60))
    assert problems_of('--max-wait', '60') == [
        "1 run waiting longer than 60 s in queue 'default' (oldest 95 s)",
        "2 hand-off jobs waiting longer than 60 s in queue 'emails' (oldest 300 s): does a "
        "worker serve its channel sisy.run_task.emails?",
        "2 runs waiting longer than 60 s in queue 'reports' (oldest 500 s), 1 of them a "
        "hand-off job (oldest 150 s): does a worker serve its channel sisy.run_task.reports?"]
    status, out, _ = run_health('--max-wait', '600')
    assert (status, out) == (0, 'Sisy is healthy: last tick 1 s ago; 6 waiting (oldest 500 s), '
                                '4 of them hand-off jobs (oldest 300 s), 1 hand-off job due '
                                'later (run_after).\n')


def test_a_queue_left_out_of_sisy_queues_is_named_as_such():
    ticked(1)
    with override_settings(SISY_QUEUES=['default', 'emails']):
        enqueued(jobs.add, 300, 1, 2, queue_name='emails')
    assert problems_of() == [
        "1 hand-off job waiting longer than 120 s in queue 'emails' (oldest 300 s): no worker "
        "takes its runs, as it is not one of SISY_QUEUES"]


def test_default_max_wait_is_two_periods_at_least_a_minute():
    assert health.default_max_wait() == 120
    with override_settings(SISY_HEARTBEAT_FREQUENCY=5):
        assert health.default_max_wait() == 60


def test_runs_past_their_timeout():
    ticked(1)
    nightly = make('nightly', timeout=300)
    now = timezone.now()
    late = add_run(nightly, TaskRun.RUNNING, started_at=now - dt.timedelta(seconds=412))
    add_run(make('grace', timeout=300), TaskRun.RUNNING,  # within the 5 s to give way
            started_at=now - dt.timedelta(seconds=303))
    add_run(make('unlimited', timeout=None), TaskRun.RUNNING,
            started_at=now - dt.timedelta(days=1))
    assert problems_of() == ["run %d of 'nightly' is past its timeout of 300 s (running 412 s)"
                             % late.pk]


def test_hand_off_jobs_past_their_timeout():
    ticked(1)
    now = timezone.now()
    slow = enqueued(jobs.too_slow, 0)  # timeout=0.2
    unlimited = enqueued(jobs.add, 0, 1, 2)
    TaskRun.objects.filter(pk__in=[slow, unlimited]).update(
        status=TaskRun.RUNNING, started_at=now - dt.timedelta(seconds=412))
    assert problems_of() == ["run %d of 'tests.testapp.jobs.too_slow' is past its timeout of "
                             "0.2 s (running 412 s)" % slow]


def test_tasks_failing_in_a_row():
    ticked(1)
    sync = make('sync')
    failed_runs(sync, TaskRun.ERROR, TaskRun.OK, TaskRun.ERROR, TaskRun.TIMEOUT,
                TaskRun.LOST, TaskRun.ERROR, TaskRun.SKIPPED, TaskRun.ERROR)
    Task.objects.filter(pk=sync.pk).update(last_outcome=TaskRun.ERROR)
    flaky = make('flaky')
    failed_runs(flaky, TaskRun.ERROR, TaskRun.ERROR, TaskRun.STOPPED, TaskRun.ERROR,
                TaskRun.ERROR)
    failed_runs(make('fine'), TaskRun.ERROR, TaskRun.ERROR, TaskRun.ERROR, TaskRun.OK)
    assert problems_of() == ["task 'sync' failed 5 times in a row"]
    assert run_health('--failures', '2')[2] == ["task 'flaky' failed 2 times in a row",
                                               "task 'sync' failed 5 times in a row"]
    assert run_health('--failures', '6')[0] == 0


def test_the_failure_streak_and_last_success_per_task():
    task = make('sync')
    before = timezone.now() - dt.timedelta(hours=1)
    add_run(task, TaskRun.OK, started_at=before, duration=1.0)
    failed_runs(task, TaskRun.ERROR, TaskRun.ERROR)
    never = make('never')
    failed_runs(never, TaskRun.TIMEOUT)
    found = {row.label: row for row in health.unsettled_tasks()}
    assert (found['sync'].failures, found['sync'].last_success) == (2, before)
    assert (found['never'].failures, found['never'].last_success) == (1, None)


def test_tasks_disabled_by_sisy():
    ticked(1)
    make('report', enabled=False)
    Task.objects.filter(label='report').update(
        disabled_reason='Cannot load the task function: no module reports.tasks\n(more)')
    make('paused', enabled=False)  # an operator disabled it: not a problem
    assert problems_of() == ["task 'report' was disabled by Sisy: Cannot load the task "
                             "function: no module reports.tasks"]


def test_long_lists_are_cut_with_a_count():
    ticked(1)
    for number in range(13):
        make('gone-%02d' % number, enabled=False)
    Task.objects.update(disabled_reason='Invalid schedule')
    err = problems_of('--only', 'disabled')
    assert len(err) == 11
    assert err[0] == "task 'gone-00' was disabled by Sisy: Invalid schedule"
    assert err[-1] == 'and 3 more tasks were disabled by Sisy'


def test_only_runs_the_named_checks():
    make('report', enabled=False)
    Task.objects.update(disabled_reason='Invalid schedule')
    err = problems_of('--only', 'tick', '--only', 'waiting')
    assert len(err) == 1 and err[0].startswith('no tick processed yet')
    ticked(1)
    assert run_health('--only', 'tick', '--only', 'waiting')[0] == 0
    assert run_health('--only', 'disabled')[0] == 2


@pytest.mark.parametrize('args, message', [
    (['--failures', '0'], '--failures must be 1 or more; got 0.'),
    (['--max-wait', '-1'], '--max-wait must be 0 or more seconds; got -1.'),
    (['--tick-periods', '0'], '--tick-periods must be more than 0; got 0.'),
])
def test_bad_options_are_refused(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run_health(*args)


@pytest.mark.parametrize('error, line', [
    (DatabaseError('could not connect to server: Connection refused\n\tIs it up?'),
     'could not connect to server: Connection refused'),
    (InterfaceError('connection already closed'), 'connection already closed'),
])
def test_a_database_it_cannot_read_is_a_problem(monkeypatch, error, line):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(health, 'problems', fail)
    assert problems_of() == ["cannot read Sisy's tables: " + line]


def test_the_banner_takes_two_queries(django_assert_num_queries):
    ticked(4)
    with django_assert_num_queries(2):
        banner = health.banner(timezone.now())
    assert banner['problems'] == []
    assert re.match(r'last tick [45] s ago; 0 waiting$', banner['summary'])


def admin_page():
    user = User.objects.create_superuser('admin', 'admin@example.com', 'pw')
    client = Client()
    client.force_login(user)
    return re.sub(r'\s+', ' ', client.get('/admin/sisy/task/').content.decode())


def test_the_task_list_shows_the_health_banner():
    ticked(4)
    make('nightly')
    page = admin_page()
    assert re.search(r'<ul class="messagelist sisy-health"> <li class="success">Scheduler: '
                     r'last tick [45] s ago; 0 waiting</li>', page), page
    assert 'nightly' in page


@override_settings(SISY_HEARTBEAT_FREQUENCY=1)
def test_the_banner_shows_the_problems():
    ticked(47)
    task = make('busy')
    for _ in range(3):
        add_run(task, TaskRun.PENDING, seconds_ago=95)
    page = admin_page()
    assert ('<li class="error">Scheduler: no tick processed for 47 s (3 heartbeat periods is '
            '3 s)</li> <li class="error">Scheduler: 3 runs waiting longer than 60 s in queue '
            '&#39;default&#39; (oldest 95 s)</li>') in page
    assert 'class="success"' not in page
