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
    """Save one recording task per spec: label, schedule, start_in/end_in (s), enabled."""
    now = timezone.now()
    made = {}
    for spec in specs:
        fields = {'enabled': spec.get('enabled', True)}
        if 'start_in' in spec:
            fields['start_running'] = now + dt.timedelta(seconds=spec['start_in'])
        if 'end_in' in spec:
            fields['end_running'] = now + dt.timedelta(seconds=spec['end_in'])
        task = task_with_callable(RECORD, label=spec['label'], schedule=spec['schedule'],
                                  userdata={'tag': spec['label']}, **fields)
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


def run_once(tag):
    return {'pk': Task.run_once(RECORD, userdata={'tag': tag}).pk}


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
