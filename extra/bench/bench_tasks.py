"""What the benchmarks run inside a Sisy site: the no-op task and the task set-ups.

Called in the site's own processes (``manage.py shell -c``), with bench_settings.
Each set-up function takes and returns JSON-able values; times are epoch seconds.
"""

import datetime as dt
import math
import os

from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from sisy.models import Task, task_with_callable

NOOP = 'bench_tasks.noop'
_log_fd = None


def noop(message):
    """Do nothing, except note which task and run this was in the process's execution log.

    The note is one append to a file of this process (SISY_BENCH_EXEC_LOG.<pid>),
    no database write: it lets the benchmark count calls of the function
    independently of what the run table says.
    """
    global _log_fd
    path = os.environ.get('SISY_BENCH_EXEC_LOG')
    if not path:
        return
    if _log_fd is None:
        _log_fd = os.open('%s.%d' % (path, os.getpid()),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_log_fd, ('%s %s\n' % (message['task'].label,
                                    message['message'].content.get('run_id'))).encode())


def burst(count, lead):
    """`count` Task.run_once no-op tasks, committed in one transaction, due at one whole
    second `lead` seconds or more from now. Each is labelled ``burst-<its id>``
    (in the same transaction), so its runs can be told apart after the task is gone.
    """
    started = timezone.now()
    due = math.ceil(started.timestamp()) + lead
    when = dt.datetime.fromtimestamp(due, dt.timezone.utc)
    with transaction.atomic():
        ids = [Task.run_once(NOOP, delay_until=when).pk for _ in range(count)]
        Task.objects.filter(pk__gte=min(ids), pk__lte=max(ids)).update(
            label=Concat(Value('burst-'), Cast('pk', CharField())))
    committed = timezone.now()
    return {'due': due, 'started': started.timestamp(), 'committed': committed.timestamp(),
            'labels': ['burst-%d' % pk for pk in ids]}


def every_second(count):
    """`count` standing tasks running the no-op every second (``'* * * * * *'``)."""
    labels = []
    with transaction.atomic():
        for number in range(count):
            task = task_with_callable(NOOP, label='second-%02d' % number,
                                      schedule='* * * * * *')
            task.save()
            labels.append(task.label)
    return {'labels': labels, 'saved': timezone.now().timestamp()}
