"""What the benchmarks run inside a Sisy site: the no-op task and the task set-ups.

Called in the site's own processes (``manage.py shell -c``), with bench_settings.
Each set-up function takes and returns JSON-able values; times are epoch seconds.
"""

import contextlib
import datetime as dt
import math
import os
import random
import time

from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from sisy.models import Task, task_with_callable
from stamplog import note  # noqa: F401 (bench_jobs and the run_once function use it)

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



# -- the hand-off benchmark (handoff.py) --------------------------------------------------


def stamp_run(message):
    """The Task.run_once function: notes its task's id as "T<id>"."""
    note('T%d' % message['task'].pk)


def _caller(kind):
    """A function making one call of `kind` for key number n; returns the key noted."""
    if kind == 'task':
        import bench_jobs  # needs sisy.tasks

        def call(number):
            bench_jobs.stamp.enqueue('J%d' % number)
            return 'J%d' % number
    elif kind == 'run_once':
        def call(number):
            return 'T%d' % Task.run_once('bench_tasks.stamp_run').pk
    else:
        raise ValueError('unknown kind %r' % kind)
    return call


def latency_calls(kind, count, gap_min, gap_max, seed):
    """`count` calls of `kind`, `gap_min` to `gap_max` seconds apart at random, outside any
    transaction; [(key, epoch seconds the call returned)], after one warm-up call not listed
    (it opens the connection, as a web process's is open already).
    """
    call = _caller(kind)
    call(-1)
    rng = random.Random(seed)
    returned = []
    for number in range(count):
        time.sleep(rng.uniform(gap_min, gap_max))
        key = call(number)
        returned.append((key, time.time()))
    return returned


def warm_up(kind):
    """One call of `kind`, to let the workers load what they need; its key."""
    return _caller(kind)(-1)


def enqueue_burst(count, atomic=False):
    """`count` calls of the @task's enqueue one after the other, each committing on its
    own, or with `atomic` all in one transaction."""
    call = _caller('task')
    cpu, started, marks = time.process_time(), time.time(), {}
    with transaction.atomic() if atomic else contextlib.suppress():
        if atomic:
            _mark_commit(marks)
        keys = [call(number) for number in range(count)]
    return {'started': started, 'returned': time.time(), 'keys': keys,
            'cpu': time.process_time() - cpu, 'committed': marks.get('committed')}


def _mark_commit(marks):
    """Note in `marks` when the transaction commits: the first of its on_commit hooks."""
    transaction.on_commit(lambda: marks.update(committed=time.time()))


def run_once_burst(count):
    """`count` Task.run_once calls committed in one transaction (the issue's first harness)."""
    cpu, started, marks = time.process_time(), time.time(), {}
    with transaction.atomic():
        _mark_commit(marks)
        keys = ['T%d' % Task.run_once('bench_tasks.stamp_run').pk for _ in range(count)]
    return {'started': started, 'returned': time.time(), 'keys': keys,
            'cpu': time.process_time() - cpu, 'committed': marks.get('committed')}
