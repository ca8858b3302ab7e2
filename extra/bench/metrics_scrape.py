"""Benchmark: one scrape of /sisy/metrics with 100,000 tasks on PostgreSQL.

Usage (from the repository root; PostgreSQL at 127.0.0.1:5432, user postgres):
    .venv/bin/python extra/bench/metrics_scrape.py [--tasks 100000] [--scrapes 9]

Creates its own database (sisy_bench_metrics), fills it with tasks with distinct
labels (the most per-task series; 1% failing, 2% disabled by Sisy), a month of
run history, a full recent window and a backlog of pending runs, then times the
metrics view through Django's test client with the bearer token, and
``sisy_health``'s checks. Prints the median of several scrapes; the database is
dropped afterwards. The target: a scrape under 300 ms.
"""

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')
os.environ['SISY_TEST_DATABASE'] = 'postgresql'
os.environ['SISY_TEST_PG_NAME'] = DATABASE = 'sisy_bench_metrics'

import django  # noqa: E402
from django.conf import settings  # noqa: E402

TOKEN = 'bench-token'
FAILING, DISABLED = 0.01, 0.02
HISTORY_RUNS, RECENT_RUNS, PENDING_RUNS = 50000, 12000, 2000


def fill(task_count):
    from django.db import connection
    from django.utils import timezone

    from sisy.models import Task, TaskRun, TickRecord, task_with_callable

    rng = random.Random(9)
    info = task_with_callable('tests.testapp.tasks.record')._func_info
    now = timezone.now()
    tasks = []
    for number in range(task_count):
        roll = rng.random()
        task = Task(label='customer-sync-%06d' % number, schedule='%d * * * *' % (number % 60),
                    _func_info=info, next_run=now + dt.timedelta(seconds=rng.randrange(3600)),
                    last_run=now - dt.timedelta(seconds=rng.randrange(3600)), last_outcome='ok')
        if roll < FAILING:
            task.last_outcome = TaskRun.ERROR
        elif roll < FAILING + DISABLED:
            task.enabled, task.next_run = False, None
            task.disabled_reason = 'Cannot load the task function: no module crm.sync'
        tasks.append(task)
    Task.objects.bulk_create(tasks, batch_size=2000)
    ids = list(Task.objects.values_list('pk', 'label', 'last_outcome'))
    runs = []

    def run(task, status, ago, duration=None, started=True):
        scheduled = now - dt.timedelta(seconds=ago)
        runs.append(TaskRun(task_id=task[0], task_label=task[1], scheduled_for=scheduled,
                            status=status, duration=duration,
                            started_at=scheduled + dt.timedelta(seconds=rng.random())
                            if started else None,
                            finished_at=scheduled + dt.timedelta(seconds=duration or 0)
                            if duration is not None else None))

    for task in ids:
        if task[2] == TaskRun.ERROR:  # an old success, then failures since
            run(task, TaskRun.OK, 7200, 1.0)
            for attempt in range(rng.randrange(1, 8)):
                run(task, TaskRun.ERROR, 3000 - attempt * 300, 0.5)
    for _ in range(HISTORY_RUNS):
        run(rng.choice(ids), TaskRun.OK, rng.randrange(700, 30 * 86400), rng.random() * 10)
    for _ in range(RECENT_RUNS):
        run(rng.choice(ids), rng.choice((TaskRun.OK,) * 9 + (TaskRun.ERROR,)),
            rng.randrange(1, 590), rng.random() * 10)
    for _ in range(PENDING_RUNS):
        run(rng.choice(ids), TaskRun.PENDING, rng.randrange(1, 120), started=False)
    TaskRun.objects.bulk_create(runs, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute('UPDATE sisy_taskrun SET created_at = scheduled_for')
        cursor.execute('ANALYZE')
    TickRecord.objects.create(worker='bench pid 1', tick=now, processed_at=now)
    return len(runs)


def timed(action, rounds):
    action()  # warm up: connection, caches
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = action()
        timings.append(time.perf_counter() - started)
    return timings, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=100000)
    parser.add_argument('--scrapes', type=int, default=9)
    options = parser.parse_args()
    settings.SISY_METRICS_TOKEN = TOKEN
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from sisy import health

    connection.close()
    with connection._nodb_connection.cursor() as cursor:
        cursor.execute('DROP DATABASE IF EXISTS %s' % DATABASE)
        cursor.execute('CREATE DATABASE %s' % DATABASE)
    try:
        call_command('migrate', verbosity=0)
        started = time.perf_counter()
        run_count = fill(options.tasks)
        print('filled %d tasks and %d runs in %.0f s'
              % (options.tasks, run_count, time.perf_counter() - started))
        client = Client()

        def scrape():
            response = client.get('/sisy/metrics', HTTP_AUTHORIZATION='Bearer ' + TOKEN)
            assert response.status_code == 200, response.status_code
            return response.content

        timings, body = timed(scrape, options.scrapes)
        series = sum(1 for line in body.decode().splitlines() if not line.startswith('#'))
        print('scrape: median %.1f ms (min %.1f, max %.1f) over %d; %d samples, %d bytes'
              % (statistics.median(timings) * 1000, min(timings) * 1000, max(timings) * 1000,
                 len(timings), series, len(body)))
        timings, found = timed(lambda: health.problems(timezone.now()), options.scrapes)
        print('sisy_health checks: median %.1f ms; %d problem line(s)'
              % (statistics.median(timings) * 1000, len(found)))
        timings, _ = timed(lambda: health.banner(timezone.now()), options.scrapes)
        print('admin banner: median %.1f ms' % (statistics.median(timings) * 1000))
    finally:
        connection.close()
        with connection._nodb_connection.cursor() as cursor:
            cursor.execute('DROP DATABASE IF EXISTS %s' % DATABASE)


if __name__ == '__main__':
    main()
