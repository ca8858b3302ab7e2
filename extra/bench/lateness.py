"""Benchmark: how late every-second tasks start, whether slots are missed, and memory.

Usage (from the repository root; PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 must be running):

    .venv/bin/python extra/bench/lateness.py              # 20 tasks, 60 s window

A Sisy site of real processes on PostgreSQL + Redis: a fresh copy of a migrated
database, 2 ``runworker`` processes on Sisy's channels and a ``sisy_heartbeat``
with SISY_HEARTBEAT_FREQUENCY=1. After a warm-up with nothing to run, the
RSS of the heartbeat and of the (idle) workers is read from /proc/PID/status.
Then 20 tasks running a no-op every second (``'* * * * * *'``) are saved, and
after a few seconds more a window of 60 whole seconds is watched. From the run
table: the start delay of each run in the window (started_at - scheduled_for;
p50, p99, max), missed slots (a second of the window with no run of a task),
duplicate runs (two runs of one task for one slot) and runs not started by the
end. Then the RSS again, after the load. Ends by itself in about 90 s and
removes its database and Redis keys.
"""

import argparse
import collections
import math
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchsite  # noqa: E402

STACK = 'postgresql-redis'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', type=int, default=20)
    parser.add_argument('--seconds', type=int, default=60, help='the window watched')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=5,
                        help='seconds of idle ticks before the RSS is read, and of load '
                             'before the window opens')
    parser.add_argument('--keep', action='store_true', help="keep the processes' logs")
    return parser.parse_args()


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def memory(processes):
    parts = []
    for process in processes:
        rss, peak = benchsite.rss_kib(process.pid)
        parts.append('%s %.1f MiB (peak %.1f)' % (process.name, rss / 1024, peak / 1024))
    return ', '.join(parts)


def main():
    args = parse_args()
    folder = tempfile.mkdtemp(prefix='sisy-bench-lateness-')
    print('%d every-second tasks, %d workers, 1 s heartbeat, %d s window on PostgreSQL + '
          'Redis; %s; %s' % (args.tasks, args.workers, args.seconds,
                             time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                             benchsite.code_state()), flush=True)
    print(benchsite.machine_state(), flush=True)
    template = benchsite.Template(STACK, folder)
    site = None
    try:
        site = benchsite.Site(STACK, template, folder)
        workers = site.start_workers(args.workers)
        heartbeat = site.start_heartbeat()
        time.sleep(args.warmup)  # ticks with nothing due: the processes settle
        print('RSS idle, after %d s of ticks: %s' % (args.warmup, memory([heartbeat] + workers)))

        made = site.call('every_second', count=args.tasks)
        labels = made['labels']
        opens = math.ceil(made['saved']) + args.warmup
        closes = opens + args.seconds
        time.sleep(max(0.0, closes + 3 - time.time()))  # the last slot's runs have finished
        loaded = memory([heartbeat] + workers)
        troubles = site.troubles()

        rows = site.rows(
            'SELECT task_label, %s, %s, status FROM sisy_taskrun '
            'WHERE scheduled_for >= to_timestamp(%%s) AND scheduled_for < to_timestamp(%%s)'
            % (site.epoch('scheduled_for'), site.epoch('started_at')), (opens, closes))
        site.stop_processes()
        stale = sum(process.log().count('Ignoring stale tick') for process in workers)
        report(args, labels, rows, opens, closes, stale)
        print('RSS after %d s of %d runs/s: %s' % (closes - made['saved'], args.tasks, loaded))
        for name, excerpt in troubles:
            print('  %s: %s' % (name, excerpt.strip()[:1500]))
        if args.keep:
            print('logs: %s' % site.folder)
        print('at the end: %s' % benchsite.machine_state())
    finally:
        if site is not None:
            site.cleanup(keep_files=args.keep)
        template.drop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def report(args, labels, rows, opens, closes, stale):
    slots = collections.defaultdict(collections.Counter)
    delays, not_started, not_ok = [], 0, collections.Counter()
    for label, scheduled, started, status in rows:
        if label not in labels:
            continue
        slots[label][round(scheduled)] += 1
        if started is None:
            not_started += 1
        else:
            delays.append(started - scheduled)
        if status not in ('ok', 'pending', 'running'):
            not_ok[status] += 1
    expected = set(range(int(opens), int(closes)))
    missed = sum(len(expected - set(slots[label])) for label in labels)
    duplicates = sum(n - 1 for label in labels for n in slots[label].values() if n > 1)
    print('window %d s x %d tasks = %d slots: %d runs, %d missed slots, %d duplicates, '
          '%d not started by the end%s'
          % (closes - opens, len(labels), len(expected) * len(labels), len(rows), missed,
             duplicates, not_started, '; not ok: %s' % dict(not_ok) if not_ok else ''))
    if delays:
        print('start delay (started_at - scheduled_for): p50 %.0f ms, p99 %.0f ms, max %.0f ms, '
              'min %.0f ms' % (percentile(delays, 0.5) * 1000, percentile(delays, 0.99) * 1000,
                               max(delays) * 1000, min(delays) * 1000))
    print('stale ticks dropped by the workers: %d' % stale)


if __name__ == '__main__':
    sys.exit(main())
