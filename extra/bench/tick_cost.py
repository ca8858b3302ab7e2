"""Benchmark: what one tick costs, by table size and number of due tasks.

Usage (from the repository root; PostgreSQL on 127.0.0.1:5432 for its part):

    .venv/bin/python extra/bench/tick_cost.py                      # PostgreSQL, then SQLite
    .venv/bin/python extra/bench/tick_cost.py --backends postgresql --rounds 21

Tables of 1,000, 10,000 and 100,000 tasks, with 1% of them due (10, 100, 1,000)
and with a fixed 50 due; the other tasks are idle, due at times spread over the
next 30 days. Each case has a database of its own (PostgreSQL: a database per
table size, dropped at the end; SQLite: a file in WAL mode per size), and each
round measures every case once, in an order that rotates from round to round:

* claim: ``sisy.dispatch.claim_due_tasks(tick)``, the claim of the due tasks;
* tick: ``sisy.dispatch.process_tick(tick)``, all a tick does (lost runs, stuck
  tasks, the claim, the run messages on the in-memory channel layer, the reaper).

Before each measurement the due tasks are made due again, their runs deleted
(and on PostgreSQL the tables vacuumed), so every round starts alike. Prints the
median (and min-max) of each case over the rounds, the ratio 100,000 / 1,000
tasks at 50 due, and the cost per extra due task at 100,000 tasks.
"""

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, HERE]

from benchsite import code_state, machine_state, pg_admin  # noqa: E402

SIZES = (1000, 10000, 100000)
FIXED_DUE = 50


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backends', default='postgresql,sqlite',
                        help='comma-separated: postgresql, sqlite')
    parser.add_argument('--rounds', type=int, default=11)
    parser.add_argument('--sizes', default=','.join(str(size) for size in SIZES))
    args = parser.parse_args()
    args.backends = [name.strip() for name in args.backends.split(',') if name.strip()]
    args.sizes = [int(size) for size in args.sizes.split(',')]
    return args


def cases(sizes):
    """(tasks, due) pairs: 1% due, then a fixed 50 due, for each table size."""
    found = []
    for size in sizes:
        for due in (max(size // 100, 1), FIXED_DUE):
            if (size, due) not in found:
                found.append((size, due))
    return found


def main():
    args = parse_args()
    if len(args.backends) > 1:
        # Django is set up once per process: one process per backend.
        status = 0
        for backend in args.backends:
            status |= subprocess.call([sys.executable, os.path.abspath(__file__),
                                       '--backends', backend, '--rounds', str(args.rounds),
                                       '--sizes', ','.join(map(str, args.sizes))])
        return status
    return measure(args.backends[0], args.rounds, args.sizes)


def measure(backend, rounds, sizes):
    if backend not in ('postgresql', 'sqlite'):
        raise SystemExit('unknown backend %r' % backend)
    os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'
    if backend == 'postgresql':
        os.environ['SISY_TEST_DATABASE'] = 'postgresql'
    else:
        os.environ.pop('SISY_TEST_DATABASE', None)
    import django
    from django.conf import settings
    token = uuid.uuid4().hex[:8]
    folder = tempfile.mkdtemp(prefix='sisy-bench-tick-')
    names = {size: (os.path.join(folder, 'tick-%d.sqlite3' % size) if backend == 'sqlite'
                    else 'sisy_bench_tick_%s_%d' % (token, size)) for size in sizes}
    settings.DATABASES['default']['NAME'] = names[sizes[0]]
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created

    def tune(sender, connection, **kwargs):
        if connection.vendor == 'sqlite':  # as a site with several processes runs SQLite
            with connection.cursor() as cursor:
                cursor.execute('PRAGMA journal_mode=WAL')
                cursor.execute('PRAGMA synchronous=NORMAL')

    connection_created.connect(tune)

    def use(size):
        connection.close()
        connection.settings_dict['NAME'] = names[size]

    try:
        started = time.monotonic()
        template = None
        for size in sizes:
            connection.close()  # a template database must have no other session
            if backend == 'postgresql':
                pg_admin('CREATE DATABASE "%s"%s' % (
                    names[size], ' TEMPLATE "%s"' % template if template else ''))
            elif template:
                shutil.copyfile(template, names[size])
            use(size)
            if template is None:
                call_command('migrate', verbosity=0)
                template = names[size]
        for size in sizes:
            use(size)
            fill(size)
        print('%s: %s tasks built in %.0f s; %d rounds; %s; %s' % (
            backend, ', '.join('{:,}'.format(size) for size in sizes),
            time.monotonic() - started, rounds,
            time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), code_state()), flush=True)
        print('  %s' % machine_state(), flush=True)
        timings = run_rounds(backend, sizes, rounds, use)
        report(backend, sizes, timings)
        print('  at the end: %s' % machine_state())
    finally:
        connection.close()
        if backend == 'postgresql':
            for name in names.values():
                pg_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


WHEN = None


def fill(size):
    """`size` tasks: the candidates for being due (label 'due'), the rest idle."""
    from django.db import connection, transaction
    from django.utils import timezone

    from sisy.models import Task, task_with_callable
    global WHEN
    WHEN = WHEN or timezone.now().replace(microsecond=0)
    info = task_with_callable('tests.testapp.tasks.record')._func_info
    candidates = max(size // 100, FIXED_DUE)
    far = WHEN + dt.timedelta(days=400)
    # SQLite: Django's own batch size (its compound SELECT holds 500 rows at most)
    batch_size = 1000 if connection.vendor == 'postgresql' else None
    batch = []
    for number in range(size):
        if number < candidates:
            task = Task(label='due', _func_info=info, next_run=far)
        else:  # idle: due some time in the next 30 days
            task = Task(label='idle', _func_info=info,
                        next_run=WHEN + dt.timedelta(minutes=1 + number % 43200))
        batch.append(task)
    with transaction.atomic():
        Task.objects.bulk_create(batch, batch_size=batch_size)
    with connection.cursor() as cursor:
        cursor.execute('VACUUM ANALYZE sisy_task' if connection.vendor == 'postgresql'
                       else 'ANALYZE')


def reset(due):
    """Make exactly `due` of the candidates due at WHEN again, the others not; no runs."""
    from django.db import connection

    from sisy.models import Task, TaskRun
    TaskRun.objects.all().delete()
    candidates = list(Task.objects.filter(label='due').order_by('pk')
                      .values_list('pk', flat=True))
    fields = {'running': False, 'finished_at': None, 'enabled': True}
    Task.objects.filter(pk__in=candidates[:due]).update(next_run=WHEN, **fields)
    Task.objects.filter(pk__in=candidates[due:]).update(
        next_run=WHEN + dt.timedelta(days=400), **fields)
    if connection.vendor == 'postgresql':
        with connection.cursor() as cursor:
            cursor.execute('VACUUM ANALYZE sisy_task, sisy_taskrun')


def run_rounds(backend, sizes, rounds, use):
    from channels import channel_layers

    from sisy import dispatch
    layer = channel_layers['default'].channel_layer
    measured = cases(sizes)
    timings = {(case, kind): [] for case in measured for kind in ('claim', 'tick')}
    for number in range(rounds):
        shift = number % len(measured)
        for size, due in measured[shift:] + measured[:shift]:
            use(size)
            for kind in ('claim', 'tick'):
                reset(due)
                layer.flush()
                start = time.perf_counter()
                if kind == 'claim':
                    claimed = dispatch.claim_due_tasks(WHEN)
                else:
                    # "now" just after the tick, as on a worker handling it at once
                    claimed = dispatch.process_tick(WHEN, now=WHEN + dt.timedelta(seconds=0.01))
                timings[(size, due), kind].append(time.perf_counter() - start)
                if len(claimed) != due:
                    raise AssertionError('%s with %d tasks claimed %d of %d due'
                                         % (kind, size, len(claimed), due))
        print('  round %d of %d done' % (number + 1, rounds), flush=True)
    return timings


def report(backend, sizes, timings):
    def ms(values):
        return '%8.1f ms (%.1f-%.1f)' % (statistics.median(values) * 1000,
                                         min(values) * 1000, max(values) * 1000)

    def median(size, due, kind):
        return statistics.median(timings[(size, due), kind])

    print('%s: median over rounds (min-max)' % backend)
    print('  %8s %6s  %-26s %-26s' % ('tasks', 'due', 'claim_due_tasks', 'process_tick'))
    for size, due in cases(sizes):
        print('  %8s %6s  %-26s %-26s' % ('{:,}'.format(size), '{:,}'.format(due),
                                         ms(timings[(size, due), 'claim']),
                                         ms(timings[(size, due), 'tick'])))
    small, large = min(sizes), max(sizes)
    if small != large:
        print('  ratio %s / %s tasks at %d due: claim %.2f, tick %.2f' % (
            '{:,}'.format(large), '{:,}'.format(small), FIXED_DUE,
            median(large, FIXED_DUE, 'claim') / median(small, FIXED_DUE, 'claim'),
            median(large, FIXED_DUE, 'tick') / median(small, FIXED_DUE, 'tick')))
    many = max(large // 100, 1)
    if many > FIXED_DUE:
        per_task = ((median(large, many, 'tick') - median(large, FIXED_DUE, 'tick'))
                    / (many - FIXED_DUE))
        print('  per extra due task at %s tasks: %.2f ms (tick)' % ('{:,}'.format(large),
                                                                   per_task * 1000))
    sys.stdout.flush()


if __name__ == '__main__':
    sys.exit(main())
