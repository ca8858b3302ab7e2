"""Benchmark: time to claim 50 due tasks in tables of 1,000 and 50,000 tasks.

Usage (from the repository root):
    .venv/bin/python extra/bench/tick_cost.py               # SQLite file
    SISY_TEST_DATABASE=postgresql .venv/bin/python extra/bench/tick_cost.py

Prints the median claim time of each table size over several rounds and their
ratio. A ratio near 1 means a tick's cost does not grow with idle tasks.
"""

import datetime as dt
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')

import django  # noqa: E402
from django.conf import settings  # noqa: E402

ROUNDS = 15
DUE = 50


def main():
    if settings.DATABASES['default']['ENGINE'].endswith('sqlite3'):
        settings.DATABASES['default']['NAME'] = os.path.join(tempfile.mkdtemp(), 'bench.sqlite3')
    else:
        settings.DATABASES['default']['NAME'] = 'sisy_bench'
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from sisy import dispatch
    from sisy.models import Task, TaskRun, task_with_callable

    if connection.vendor == 'postgresql':
        connection.close()
        with connection._nodb_connection.cursor() as cursor:
            cursor.execute('DROP DATABASE IF EXISTS sisy_bench')
            cursor.execute('CREATE DATABASE sisy_bench')
    call_command('migrate', verbosity=0)
    info = task_with_callable('tests.testapp.tasks.record')._func_info
    now = timezone.now().replace(microsecond=0)
    far = now + dt.timedelta(days=365)
    results = {}
    for size in (1000, 50000):
        Task.objects.all().delete()
        Task.objects.bulk_create(
            [Task(label='idle', _func_info=info, next_run=far) for _ in range(size - DUE)] +
            [Task(label='due', _func_info=info, next_run=now) for _ in range(DUE)],
            batch_size=400)
        if connection.vendor == 'postgresql':
            with connection.cursor() as cursor:
                cursor.execute('ANALYZE sisy_task')
        timings = []
        for _ in range(ROUNDS):
            Task.objects.filter(label='due').update(next_run=now, running=False)
            TaskRun.objects.all().delete()
            started = time.perf_counter()
            claimed = dispatch.claim_due_tasks(now)
            timings.append(time.perf_counter() - started)
            assert len(claimed) == DUE, len(claimed)
        results[size] = statistics.median(timings)
        print('%s, %6d tasks, %d due: median %.1f ms (min %.1f, max %.1f) over %d rounds'
              % (connection.vendor, size, DUE, results[size] * 1000, min(timings) * 1000,
                 max(timings) * 1000, ROUNDS))
    print('ratio 50,000 / 1,000 tasks: %.2f' % (results[50000] / results[1000]))


if __name__ == '__main__':
    main()
