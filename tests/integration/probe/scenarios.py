"""Task set-ups for the real-process tests, run inside the project (manage.py shell).

Each function takes and returns JSON-able values; times are ISO strings in UTC.
"""

import datetime as dt
import math

from django.db import transaction
from django.utils import timezone

from sisy.models import Task, task_with_callable

RECORD = 'tests.integration.probe.tasks.record'


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
