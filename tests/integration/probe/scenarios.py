"""Task set-ups for the real-process tests, run inside the project (manage.py shell).

Each function takes and returns JSON-able values; times are ISO strings in UTC.
"""

import datetime as dt
import math
import os
import time

from django.db import transaction
from django.utils import timezone

from sisy.models import Task, task_with_callable

RECORD = 'tests.integration.probe.tasks.record'
# A schedule whose next slot is months away: only an immediate claim runs it in a test.
YEARLY = '0 0 1 1 *'


def make_tasks(specs):
    """Save one task per spec: label, schedule, start_in/end_in (s), enabled, and
    optionally function (a dotted path; default: record), timeout, retries,
    retry_delay, iterations, wait_for_schedule, allow_overlap, seconds (kept in
    userdata, for the functions that take that long)."""
    now = timezone.now()
    made = {}
    for spec in specs:
        fields = {'enabled': spec.get('enabled', True)}
        for name in ('timeout', 'retries', 'retry_delay', 'iterations', 'wait_for_schedule',
                     'allow_overlap'):
            if name in spec:
                fields[name] = spec[name]
        if 'start_in' in spec:
            fields['start_running'] = now + dt.timedelta(seconds=spec['start_in'])
        if 'end_in' in spec:
            fields['end_running'] = now + dt.timedelta(seconds=spec['end_in'])
        userdata = {'tag': spec['label']}
        if 'seconds' in spec:
            userdata['seconds'] = spec['seconds']
        task = task_with_callable(spec.get('function', RECORD), label=spec['label'],
                                  schedule=spec.get('schedule', '* * * * * *'),
                                  userdata=userdata, **fields)
        task.save()
        made[spec['label']] = {
            'pk': task.pk,
            'start_running': _iso(task.start_running),
            'end_running': _iso(task.end_running),
        }
    return made


def run_iterations(label, iterations, schedule):
    task = Task.run_iterations(RECORD, iterations=iterations, label=label, schedule=schedule,
                               userdata={'tag': label})
    return {'pk': task.pk}


def make_superuser(username, password):
    """An admin account for the tests that post to the admin."""
    from django.contrib.auth.models import User
    User.objects.create_superuser(username, '', password)
    return {'username': username}


def immediate_calls(timeout):
    """Make each kind of immediate call in turn, waiting for its run to start before the next.

    So each finds an idle worker. Returns, per kind, its probe tag and the times
    (ISO, UTC) just before the call and just after it returned, or after the
    commit of the transaction around it. Within `timeout` seconds.
    """
    from tests.integration.probe import tasks
    deadline = time.monotonic() + timeout
    made = {}

    def timed(kind, tags, call):
        called = timezone.now()
        call()
        returned = timezone.now()
        for tag in tags:
            made[kind + ':' + tag] = {'tag': tag, 'called': called.isoformat(),
                                      'returned': returned.isoformat()}
        _wait_for_probes(tags, deadline)

    timed('run_once', ['run-once'],
          lambda: Task.run_once(RECORD, userdata={'tag': 'run-once'}))
    timed('run_iterations', ['run-iterations'],
          lambda: Task.run_iterations(RECORD, iterations=2, label='run-iterations',
                                      schedule=YEARLY, userdata={'tag': 'run-iterations'},
                                      run_immediately=True))
    timed('enqueue', ['enqueue'], lambda: tasks.record_job.enqueue('enqueue'))

    def in_transaction():
        with transaction.atomic():
            Task.run_once(RECORD, userdata={'tag': 'run-once-atomic'})
            tasks.record_job.enqueue('enqueue-atomic')

    timed('committed', ['run-once-atomic', 'enqueue-atomic'], in_transaction)
    result = tasks.fail_first_attempt.enqueue('job-retry')
    _wait_for_probes(['job-retry'], deadline, attempt=2)
    made['job_retry'] = {'tag': 'job-retry', 'job': int(result.id)}
    return made


def rolled_back_then_control(tag):
    """Enqueue and run_once inside a transaction that rolls back, then a committed control job.

    The rolled-back calls are tagged `tag` + '-rolled-back-*'; the control job `tag`.
    """
    from tests.integration.probe import tasks

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            tasks.record_job.enqueue(tag + '-rolled-back-enqueue')
            Task.run_once(RECORD, userdata={'tag': tag + '-rolled-back-run-once'})
            Task.run_iterations(RECORD, iterations=2, schedule=YEARLY, run_immediately=True,
                                userdata={'tag': tag + '-rolled-back-iterations'})
            raise Rollback()
    except Rollback:
        pass
    result = tasks.record_job.enqueue(tag)
    return {'control': int(result.id)}


def commit_with_ticks(count, ticks):
    """Enqueue `count` jobs and run_once `count` tasks in one transaction; at its commit,
    send `ticks` heartbeat ticks for that moment (what two heartbeats send), and handle
    one tick here too, as a third worker would.

    Their tags are commit-job-<n> and commit-once-<n>. Returns the time just before
    the commit and the name this process's tick is recorded under.
    """
    from sisy import dispatch, lifecycle
    from tests.integration.probe import tasks

    with transaction.atomic():
        for number in range(count):
            tasks.record_job.enqueue('commit-job-%d' % number)
            Task.run_once(RECORD, userdata={'tag': 'commit-once-%d' % number})
        committing = timezone.now()
        # Registered after the calls' doorbells: the ticks go out right behind them.
        transaction.on_commit(lambda: _send_ticks(ticks))
    dispatch.process_tick(timezone.now())
    return {'committing': committing.isoformat(),
            'ticked_by': '%s pid %s' % (lifecycle.HOST, os.getpid())}


def enqueue_on_queues(queue, count):
    """Enqueue, in one transaction, jobs on `queue` and on the default queue, interleaved,
    and run now a cron task of each queue; then send a tick.

    Tags: <queue>-<n> (`count` of them) and default-<n> (three for each of those, so
    default runs wait in the table while the other queue's worker looks for more);
    <queue>-cron and default-cron, the cron tasks; and <queue>-later, due at once but
    left for the tick to ring for (a run_after of zero).
    """
    from sisy import dispatch
    from tests.integration.probe import tasks
    with transaction.atomic():
        for number in range(count):
            tasks.record_job.using(queue_name=queue).enqueue('%s-%d' % (queue, number))
            for extra in range(3):
                tasks.record_job.enqueue('default-%d' % (3 * number + extra))
        tasks.record_job.using(queue_name=queue, run_after=dt.timedelta(0)).enqueue(
            '%s-later' % queue)
        cron = []
        for name in (queue, 'default'):
            task = task_with_callable(RECORD, label='%s-cron' % name, schedule=YEARLY,
                                      queue_name=name, userdata={'tag': '%s-cron' % name})
            task.save()
            cron.append(task.pk)
        dispatch.run_now(Task.objects.filter(pk__in=cron), timezone.now())
    _send_ticks(1)
    return {'enqueued': timezone.now().isoformat()}


def _send_ticks(count):
    """Send `count` heartbeat ticks for this moment, as heartbeat processes do."""
    from channels import Channel
    from sisy.conf import setting
    heartbeat = Channel(setting('SISY_HEARTBEAT_CHANNEL'))
    now = time.time()
    for _ in range(count):
        heartbeat.send({'time': now}, immediately=True)


def _wait_for_probes(tags, deadline, attempt=1):
    """Wait until each of `tags` has a probe record of `attempt`; fail at `deadline`."""
    from tests.integration.probe.models import ProbeRun
    while ProbeRun.objects.filter(tag__in=tags, attempt=attempt).count() < len(tags):
        if time.monotonic() > deadline:
            raise AssertionError('%s did not run (attempt %d) in time' % (tags, attempt))
        time.sleep(0.01)


def run_once(tag, label=None):
    task = Task.run_once(RECORD, userdata={'tag': tag})
    if label:
        Task.objects.filter(pk=task.pk).update(label=label)
    return {'pk': task.pk}


def send(messages):
    """Put each [channel, content] message on the project's channels, as any sender could."""
    from channels import Channel
    for channel, content in messages:
        Channel(channel).send(content, immediately=True)
    return {'sent': len(messages)}


def stop_runs_of(label):
    """What the admin's stop action does for a task's running runs; return how many."""
    from sisy import lifecycle
    from sisy.models import TaskRun
    ids = TaskRun.objects.filter(task_label=label, status='running').values_list('pk', flat=True)
    return {'stopped': lifecycle.request_stop(ids)}


def burst(count, lead):
    """`count` run_once tasks all due at one whole second, `lead` seconds from now."""
    due = dt.datetime.fromtimestamp(math.ceil(timezone.now().timestamp()) + lead,
                                    dt.timezone.utc)
    with transaction.atomic():
        for number in range(count):
            Task.run_once(RECORD, userdata={'tag': 'burst-%d' % number}, delay_until=due)
    return {'due': due.isoformat(), 'saved': timezone.now().isoformat()}


def _iso(when):
    return when.isoformat() if when else None


def run_once_while_another_process_writes(tag):
    """Task.run_once outside a transaction, another connection committing a write between
    its claim's read of the task and its claim's write (as a busy worker may).

    Returns what run_once raised ('' if nothing) and how many runs the task has.
    """
    import os
    import threading

    from django.db import connection
    from sisy import lifecycle
    from sisy.models import TaskRun
    from tests.integration.probe.models import ProbeRun

    claim = lifecycle.claim

    def write_elsewhere():
        try:
            ProbeRun.objects.create(label='elsewhere', tag=tag, pid=os.getpid(), at=timezone.now())
        finally:
            connection.close()

    def claim_after_a_write_elsewhere(tasks, when, ring=False):
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writer.join()
        return claim(tasks, when, ring=ring)

    lifecycle.claim = claim_after_a_write_elsewhere
    error = ''
    try:
        Task.run_once(RECORD, userdata={'tag': tag})
    except Exception as failure:
        error = '%s: %s' % (type(failure).__name__, failure)
    finally:
        lifecycle.claim = claim
    return {'error': error, 'runs': TaskRun.objects.count()}
