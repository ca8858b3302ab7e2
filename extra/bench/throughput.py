"""Benchmark: a burst of one-off no-op tasks through real workers; Sisy against Huey.

Usage (from the repository root; PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 must be running; Huey is a benchmark-only dependency):

    .venv/bin/pip install -r requirements/bench.txt
    .venv/bin/python extra/bench/throughput.py            # 3 rounds, 5,000 tasks each

Each round, in an order that rotates from round to round, runs:

* sisy-pg: Sisy on PostgreSQL + Redis (asgi_redis). A fresh copy of a migrated
  database, 2 ``runworker`` processes on Sisy's channels and a ``sisy_heartbeat``
  with SISY_HEARTBEAT_FREQUENCY=1, each layer at its default capacity. 5,000
  ``Task.run_once`` no-op tasks are committed in one transaction, all due at
  the same whole second, a little after the commit. Figures come from the run
  table (sisy_taskrun: status, started_at, finished_at): runs/s from the first
  start to the last finish and from the due tick to the last finish, the first
  start after the tick, duplicates (a task executed more than once, counted
  both from the run table and from the function's own per-process log of
  calls) and missing runs (a task with no ``ok`` run).
* sisy-sqlite: the same on SQLite (WAL) + asgi_ipc.
* huey: Huey's RedisHuey on the same Redis (keys of its own name), 5,000 no-op
  tasks enqueued before the consumer starts, then ``huey_consumer -k process
  -w 2``. Each execution appends to a Redis list; runs/s from the first to the
  last execution, duplicates and missing ones from that list.

Prints each round, the medians, and the ratio Sisy (PostgreSQL + Redis) / Huey
of the medians measured in this invocation. Every wait has a deadline
(--deadline seconds per burst), so the script always ends; whatever it
created (databases, Redis keys with its own prefix, shared memory, files) is
removed at the end.
"""

import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchsite  # noqa: E402

SYSTEMS = ('sisy-pg', 'sisy-sqlite', 'huey')
STACK_OF = {'sisy-pg': 'postgresql-redis', 'sisy-sqlite': 'sqlite-ipc'}
INSTALL_HUEY = ('Huey is not installed in this Python. It is a benchmark-only dependency:\n'
                '    %s -m pip install -r requirements/bench.txt\n'
                'or leave it out with --systems sisy-pg,sisy-sqlite.' % sys.executable)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--count', type=int, default=5000, help='tasks per burst')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--systems', default=','.join(SYSTEMS),
                        help='comma-separated, from %s' % ', '.join(SYSTEMS))
    parser.add_argument('--deadline', type=float, default=75,
                        help='seconds after the due tick (or the consumer start) before a '
                             'burst is given up and its unfinished runs counted missing')
    parser.add_argument('--keep', action='store_true',
                        help='keep the processes\' logs (their folder is printed)')
    parser.add_argument('--profile', metavar='DIR',
                        help='run the Sisy workers under cProfile, writing DIR/<stack>-worker-'
                             '<n>.prof (slows them down; for finding where the time goes)')
    args = parser.parse_args()
    args.systems = [name.strip() for name in args.systems.split(',') if name.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error('unknown systems: %s' % ', '.join(sorted(unknown)))
    return args


# -- Sisy ----------------------------------------------------------------------------


def sisy_burst(stack, template, folder, count, workers, deadline, keep, profile=None):
    site = benchsite.Site(stack, template, folder)
    try:
        site.start_workers(workers, profile)
        site.start_heartbeat()
        # The set-up takes ~1.4 ms per task on a quiet machine; give it room to spare.
        lead = 3 + int(count * 0.0025)
        burst = site.call('burst', count=count, lead=lead)
        due = burst['due']
        if burst['committed'] > due - 0.2:
            raise RuntimeError('the tasks were committed %.2f s after their due time; '
                               'raise the lead' % (burst['committed'] - due))
        labels = set(burst['labels'])
        time.sleep(max(0.0, due - time.time()))
        finished = "status NOT IN ('pending', 'running')"
        timed_out = False
        while True:
            done, active = site.rows(
                "SELECT SUM(CASE WHEN %s THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN %s THEN 0 ELSE 1 END) FROM sisy_taskrun" % (finished, finished))[0]
            if (done or 0) >= count and not active:
                break
            if time.time() > due + deadline:
                timed_out = True
                break
            time.sleep(0.5)
        troubles = site.troubles()  # before stopping them: a process that died on its own
        site.stop_processes()
        rows = site.rows('SELECT task_label, status, %s, %s FROM sisy_taskrun'
                         % (site.epoch('started_at'), site.epoch('finished_at')))
        calls = collections.Counter(label for label, _ in site.executions())
        result = sisy_figures(rows, calls, labels, due)
        result['timed_out'] = timed_out
        result['troubles'] = troubles + [(name, excerpt) for name, excerpt in site.troubles()
                                         if excerpt.startswith('Traceback')
                                         and (name, excerpt) not in troubles]
        if keep:
            result['logs'] = site.folder
        return result
    finally:
        site.cleanup(keep_files=keep)


def sisy_figures(rows, calls, labels, due):
    ours = [row for row in rows if row[0] in labels]
    ok = [row for row in ours if row[1] == 'ok']
    started = collections.Counter(label for label, _, start, _ in ours if start is not None)
    first_start = min(start for _, _, start, _ in ok) if ok else None
    last_finish = max(end for _, _, _, end in ok) if ok else None
    result = {
        'runs': len(ok),
        'not_ok': collections.Counter(status for _, status, _, _ in ours if status != 'ok'),
        'missing': len(labels - {label for label, _, _, _ in ok}),
        'dup_table': sum(n - 1 for n in started.values() if n > 1),
        'dup_calls': sum(n - 1 for label, n in calls.items() if n > 1 and label in labels),
        'calls': sum(n for label, n in calls.items() if label in labels),
        'first_after_tick': first_start - due if ok else None,
    }
    result['duplicates'] = max(result['dup_table'], result['dup_calls'])
    if len(ok) > 1:
        result['rate'] = len(ok) / (last_finish - first_start)
        result['rate_from_tick'] = len(ok) / (last_finish - due)
        result['last_after_tick'] = last_finish - due
    return result


# -- Huey ------------------------------------------------------------------------------


def huey_burst(folder, count, workers, deadline, keep):
    name = 'sisybench_%s' % benchsite.token()
    os.environ['SISY_BENCH_HUEY_NAME'] = name
    sys.modules.pop('bench_huey', None)
    import bench_huey
    import redis
    client = redis.StrictRedis(**benchsite.REDIS)
    log_dir = os.path.join(folder, 'huey-%s' % name)
    os.makedirs(log_dir)
    consumer = None
    try:
        for number in range(count):
            bench_huey.noop(number)
        queued = bench_huey.huey.pending_count()
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONUNBUFFERED='1')
        consumer_bin = os.path.join(os.path.dirname(sys.executable), 'huey_consumer')
        consumer = benchsite.Process('huey-consumer', [
            consumer_bin, 'bench_huey.huey', '-k', 'process', '-w', str(workers)],
            env, log_dir)
        started = time.time()
        timed_out = False
        while client.llen(bench_huey.DONE_KEY) < count:
            if time.time() > started + deadline or not consumer.alive():
                timed_out = True
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let a late duplicate show up, if any
        consumer.stop()
        done = [item.decode().split() for item in client.lrange(bench_huey.DONE_KEY, 0, -1)]
        numbers = collections.Counter(int(number) for number, _ in done)
        times = [float(at) for _, at in done]
        result = {
            'queued': queued,
            'runs': len(numbers),
            'missing': len(set(range(count)) - set(numbers)),
            'duplicates': sum(n - 1 for n in numbers.values() if n > 1),
            'first_after_start': min(times) - started if times else None,
            'timed_out': timed_out,
            'troubles': [('huey-consumer', consumer.log()[-1500:])]
            if 'Traceback' in consumer.log() else [],
        }
        if len(times) > 1:
            result['rate'] = len(times) / (max(times) - min(times))
        if keep:
            result['logs'] = log_dir
        return result
    finally:
        if consumer is not None:
            consumer.stop()
        keys = list(client.scan_iter(match='*%s*' % name, count=1000))
        if keys:
            client.delete(*keys)


# -- the benchmark ---------------------------------------------------------------------


def describe(system, result):
    if 'rate' not in result:
        text = 'no rate (%d runs)' % result['runs']
    elif system == 'huey':
        text = ('%7.0f runs/s first to last execution; first %.2f s after the consumer started'
                % (result['rate'], result['first_after_start']))
    else:
        text = ('%7.0f runs/s first start to last finish, %.0f runs/s from the tick; '
                'first start %.2f s, last finish %.2f s after the tick'
                % (result['rate'], result['rate_from_tick'], result['first_after_tick'],
                   result['last_after_tick']))
    text += '; %d runs, %d duplicates, %d missing' % (
        result['runs'], result['duplicates'], result['missing'])
    if system != 'huey':
        text += ' (calls %d; duplicates by table/calls %d/%d)' % (
            result['calls'], result['dup_table'], result['dup_calls'])
        if result['not_ok']:
            text += '; not ok: %s' % dict(result['not_ok'])
    if result['timed_out']:
        text += '; GAVE UP at the deadline'
    for name, excerpt in result['troubles']:
        text += '\n      %s: %s' % (name, excerpt.strip().replace('\n', '\n        '))
    if result.get('logs'):
        text += '\n      logs: %s' % result['logs']
    return text


def median_of(results, key):
    values = [result[key] for result in results if result.get(key) is not None]
    return statistics.median(values) if values else None


def main():
    args = parse_args()
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
    if 'huey' in args.systems:
        try:
            import huey
        except ImportError:
            print(INSTALL_HUEY, file=sys.stderr)
            return 2
        print('Huey %s' % huey.__version__)
    folder = tempfile.mkdtemp(prefix='sisy-bench-throughput-')
    print('%d round(s) of %d tasks, %d workers; %s; %s; %s' % (
        args.rounds, args.count, args.workers, ', '.join(args.systems),
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), benchsite.code_state()))
    print(benchsite.machine_state(), flush=True)
    templates = {}
    results = collections.defaultdict(list)
    started = time.monotonic()
    try:
        for system in args.systems:
            if system in STACK_OF:
                templates[system] = benchsite.Template(STACK_OF[system], folder)
        for number in range(args.rounds):
            order = args.systems[number % len(args.systems):] + \
                args.systems[:number % len(args.systems)]
            print('round %d' % (number + 1))
            for system in order:
                if system == 'huey':
                    result = huey_burst(folder, args.count, args.workers, args.deadline,
                                        args.keep)
                else:
                    result = sisy_burst(STACK_OF[system], templates[system], folder,
                                        args.count, args.workers, args.deadline, args.keep,
                                        args.profile)
                results[system].append(result)
                print('  %-11s %s' % (system, describe(system, result)), flush=True)
    finally:
        for template in templates.values():
            template.drop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print('medians of %d round(s) (%.0f s in all; at the end: %s):' % (
        args.rounds, time.monotonic() - started, benchsite.machine_state()))
    for system in args.systems:
        runs = results[system]
        line = '  %-11s %7.0f runs/s' % (system, median_of(runs, 'rate') or 0)
        if system != 'huey':
            line += ' (%.0f from the tick); first start %.2f s after the tick' % (
                median_of(runs, 'rate_from_tick') or 0, median_of(runs, 'first_after_tick') or 0)
        line += '; duplicates %d, missing %d in all' % (
            sum(r['duplicates'] for r in runs), sum(r['missing'] for r in runs))
        print(line)
    if 'sisy-pg' in results and 'huey' in results:
        sisy, huey_rate = median_of(results['sisy-pg'], 'rate'), median_of(results['huey'], 'rate')
        if sisy and huey_rate:
            print('ratio Sisy (PostgreSQL + Redis) / Huey: %.2f' % (sisy / huey_rate))
    return 0


if __name__ == '__main__':
    sys.exit(main())
