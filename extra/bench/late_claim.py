"""Benchmark: claiming tasks on time and one hour late, with a long run history (PostgreSQL).

Usage (from the repository root; PostgreSQL on 127.0.0.1:5432):

    .venv/bin/python extra/bench/late_claim.py
    .venv/bin/python extra/bench/late_claim.py --code /path/to/other/checkout   # older code

200 tasks due every minute and 1,000,000 finished runs of history (5,000 a
task, one a minute up to the tick), written with one INSERT ... SELECT
generate_series. Each round claims the 200 tasks twice, in an order that
rotates: at the tick of their slot (on time), and one hour after it (late: the
first tick after an outage, when the ledger writes why each slot is late).
The claim's transaction holds the tasks' row locks for the whole time measured.
Prints the median (min-max) of ``sisy.dispatch.claim_due_tasks`` and the
statements it ran. The database (``sisy_bench_late_claim_<token>``) is dropped
at the end.
"""

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TASKS = 200
HISTORY = 1000000
LATE = dt.timedelta(hours=1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=9)
    parser.add_argument('--tasks', type=int, default=TASKS)
    parser.add_argument('--history', type=int, default=HISTORY)
    parser.add_argument('--code', default=ROOT,
                        help='the checkout whose sisy (and tests settings) to measure')
    return parser.parse_args()


def main():
    args = parse_args()
    code = os.path.abspath(args.code)
    sys.path[:0] = [code, HERE]
    os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'
    os.environ['SISY_TEST_DATABASE'] = 'postgresql'
    if code != ROOT:
        revision = subprocess.run(['git', '-C', code, 'rev-parse', '--short', 'HEAD'],
                                  stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        os.environ['SISY_BENCH_CODE'] = 'commit %s in %s' % (revision or '?', code)
    import django
    from django.conf import settings
    name = 'sisy_bench_late_claim_%s' % uuid.uuid4().hex[:8]
    settings.DATABASES['default']['NAME'] = name
    django.setup()  # sisy and the tests' app now come from `code`
    from benchsite import code_state, machine_state, pg_admin
    from django.core.management import call_command
    from django.db import connection

    pg_admin('CREATE DATABASE "%s"' % name)
    try:
        started = time.monotonic()
        call_command('migrate', verbosity=0)
        when = fill(args.tasks, args.history)
        print('postgresql: %d tasks, %s runs of history, built in %.0f s; %d rounds; %s; %s' % (
            args.tasks, '{:,}'.format(args.history), time.monotonic() - started, args.rounds,
            time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), code_state()), flush=True)
        print('  %s' % machine_state(), flush=True)
        timings, counts = run_rounds(when, args.tasks, args.rounds)
        for case in ('on time', 'late'):
            values = timings[case]
            print('  %-8s claim %8.1f ms (%.1f-%.1f), %d statements' % (
                case, statistics.median(values) * 1000, min(values) * 1000,
                max(values) * 1000, counts[case]))
        print('  at the end: %s' % machine_state())
    finally:
        connection.close()
        pg_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    return 0


def fill(tasks, history):
    """The tasks, due every minute, and their finished runs; returns the tick's time."""
    from django.db import connection, transaction
    from django.utils import timezone

    from sisy.models import Task, TaskRun, TickRecord, task_with_callable
    when = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(hours=2)
    info = task_with_callable('tests.testapp.tasks.record')._func_info
    with transaction.atomic():
        Task.objects.bulk_create([Task(label='late-%d' % number, _func_info=info,
                                       schedule='* * * * *', next_run=when)
                                  for number in range(tasks)])
    first = Task.objects.order_by('pk').values_list('pk', flat=True)[0]
    # Run n belongs to task n % tasks and was scheduled n // tasks + 1 minutes before the tick.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO {run} (task_id, task_label, scheduled_for, attempt, status, created_at, "
            "started_at, finished_at, duration, stop_requested, host, pid, error) "
            "SELECT %s + n %% %s, 'late-' || (n %% %s), slot, 1, 'ok', slot, slot, "
            "slot + interval '2 seconds', 2.0, false, 'bench', 1, '' FROM ("
            "SELECT n, %s - (n / %s + 1) * interval '1 minute' AS slot "
            "FROM generate_series(0, %s - 1) AS n) AS history".format(run=TaskRun._meta.db_table),
            [first, tasks, tasks, when, tasks, history])
        cursor.execute('VACUUM ANALYZE')
    TickRecord.objects.create(worker='bench', tick=when - dt.timedelta(minutes=1),
                              processed_at=when - dt.timedelta(minutes=1))
    return when


def reset(when, history_top):
    """The tasks due at `when` again, free; no runs or ledger events but the history."""
    from django.db import connection

    from sisy.models import SlotEvent, Task, TaskRun
    TaskRun.objects.filter(pk__gt=history_top).delete()
    SlotEvent.objects.all().delete()
    Task.objects.update(next_run=when, running=False, finished_at=None, enabled=True)
    with connection.cursor() as cursor:
        cursor.execute('VACUUM ANALYZE sisy_task, sisy_taskrun, sisy_slotevent')


def run_rounds(when, tasks, rounds):
    from django.db import connection
    from django.db.models import Max

    from sisy import dispatch
    from sisy.models import SlotEvent, TaskRun
    history_top = TaskRun.objects.aggregate(top=Max('pk'))['top']
    cases = [('on time', when), ('late', when + LATE)]
    timings = {case: [] for case, _ in cases}
    counts = {}
    for number in range(rounds):
        for case, at in cases[number % 2:] + cases[:number % 2]:
            reset(when, history_top)
            ran = []
            with connection.execute_wrapper(lambda execute, sql, *rest: (
                    ran.append(sql), execute(sql, *rest))[1]):
                start = time.perf_counter()
                claimed = dispatch.claim_due_tasks(at)
                timings[case].append(time.perf_counter() - start)
            counts[case] = len(ran)
            if len(claimed) != tasks:
                raise AssertionError('%s: claimed %d of %d' % (case, len(claimed), tasks))
            late = SlotEvent.objects.count()
            if late != (tasks if case == 'late' else 0):
                raise AssertionError('%s: %d ledger events' % (case, late))
        print('  round %d of %d done' % (number + 1, rounds), flush=True)
    return timings, counts


if __name__ == '__main__':
    sys.exit(main())
