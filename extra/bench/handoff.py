"""Benchmark: handing work off to background workers; Sisy against Huey in one invocation.

Usage (from the repository root; PostgreSQL on 127.0.0.1:5432; Huey is a
benchmark-only dependency, and py-spy too, for --profile):

    .venv/bin/pip install -r requirements/bench.txt
    .venv/bin/python extra/bench/handoff.py                  # both parts, 3 rounds
    .venv/bin/python extra/bench/handoff.py --parts burst --rounds 5 --profile /tmp/prof

The script starts a Redis of its own on a free port (``redis-server`` must be
on PATH; --redis-port uses a running one instead) and, for each system in each
round, a fresh Sisy site (benchsite.py: a copy of a migrated database, a
channel layer prefix, real processes) or a fresh Huey queue. The order of the
systems rotates from round to round; medians are taken over the rounds, and
ratios are of medians measured in this invocation.

latency: commit-to-start. One idle worker (a plain ``runworker``, which also
  handles the ticks) and a ``sisy_heartbeat`` at the DEFAULT frequency (60 s;
  --frequency changes it); Huey: ``huey_consumer -k process -w 1``. One caller
  process makes --calls calls, --gap-min to --gap-max seconds apart at random,
  outside any transaction, and notes the time each call returned (it has
  committed by then); the function notes the time it starts as its first
  statement. The latency of a call is the difference; p50 and p99 per round.
  Systems: <stack>-task (``@task`` ``enqueue``), <stack>-run_once
  (``Task.run_once``), for the stacks pg (PostgreSQL + Redis) and sqlite
  (SQLite + asgi_ipc); and huey (``RedisHuey``).

burst: --count calls from one process, 2 workers (--workers), counted from
  the moment the caller starts calling to the last function start (both
  systems) and to the last finish recorded in the run table (Sisy). Systems:
  <stack>-<shape>-enqueue: each ``enqueue`` its own commit, the workers
  running meanwhile; <stack>-<shape>-enqueue_atomic: the ``enqueue`` calls in
  one transaction; <stack>-<shape>-run_once: ``Task.run_once`` calls in one
  transaction (the issue's first harness). For the last two the rate from the
  commit is shown too, and how long the caller's on_commit hooks took after it.
  huey: ``huey_consumer -k process -w 2``, running while the caller enqueues.
  Shapes: plain (2 ``runworker`` processes that handle everything, and
  ``sisy_heartbeat``) and reserved (a scheduler ``runworker
  --only-channels=sisy.heartbeat --only-channels=sisy.kill_task``, 2
  ``runworker --only-channels=sisy.run_task``, and ``sisy_heartbeat``).
  Each line also gives the CPU time per run that the caller, the workers
  (Huey: the consumer and its worker processes), the site's PostgreSQL
  backends and the private Redis spent from the first call to the last start
  (less sensitive to other work on the machine than runs/s), and how busy the
  whole machine was meanwhile. --sql adds the statements per run of the
  workers and of the other processes (the caller) and their time. With
  --profile DIR, py-spy samples each Sisy worker during the burst
  (DIR/<system>-r<round>-<worker>.json, Chrome trace format) and a line per
  worker says where its main thread spent the burst (from the first call, or
  from the commit, to the last function start): waiting on its channel, in
  database calls, in Python.

Systems whose API is missing (``sisy.tasks`` before issue 15) are left out
with a note. Every wait has a deadline; whatever the script created
(databases, Redis server or keys, shared memory, files) is removed at the end.
"""

import argparse
import collections
import glob
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchsite  # noqa: E402

LATENCY = ('pg-task', 'pg-run_once', 'sqlite-task', 'sqlite-run_once', 'huey')
BURST = ('pg-plain-enqueue', 'pg-reserved-enqueue', 'pg-plain-enqueue_atomic', 'pg-plain-run_once',
         'huey')
STACK_OF = {'pg': 'postgresql-redis', 'sqlite': 'sqlite-ipc'}
SCHEDULER_CHANNELS = ['sisy.heartbeat', 'sisy.kill_task']
RUN_CHANNELS = ['sisy.run_task']
SPY = os.path.join(os.path.dirname(sys.executable), 'py-spy')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--parts', default='latency,burst')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--latency-systems', default=','.join(LATENCY))
    parser.add_argument('--burst-systems', default=','.join(BURST))
    parser.add_argument('--calls', type=int, default=50, help='latency calls per system and round')
    parser.add_argument('--gap-min', type=float, default=0.02)
    parser.add_argument('--gap-max', type=float, default=0.2)
    parser.add_argument('--count', type=int, default=5000, help='calls per burst')
    parser.add_argument('--workers', type=int, default=2, help='workers for the burst')
    parser.add_argument('--frequency', type=float, default=60,
                        help='SISY_HEARTBEAT_FREQUENCY of the Sisy sites (default: 60)')
    parser.add_argument('--deadline', type=float, default=120,
                        help='seconds to wait for the last function start of a part')
    parser.add_argument('--redis-port', type=int,
                        help='use the Redis already on this port (keys of the script\'s own '
                             'prefixes only) instead of starting one')
    parser.add_argument('--profile', metavar='DIR', help='py-spy the Sisy workers in bursts')
    parser.add_argument('--sql', action='store_true',
                        help='time the statements of the Sisy processes in bursts (sqltimer.py)')
    parser.add_argument('--async-commit', action='store_true',
                        help='an experiment: PostgreSQL sites with synchronous_commit=off, to '
                             'tell how much of a burst waits for the WAL to reach the disk')
    parser.add_argument('--keep', action='store_true', help='keep the processes\' logs')
    args = parser.parse_args()
    args.parts = [part for part in args.parts.split(',') if part]
    args.latency_systems = [name for name in args.latency_systems.split(',') if name]
    args.burst_systems = [name for name in args.burst_systems.split(',') if name]
    for name in args.latency_systems:
        if name not in LATENCY:
            parser.error('unknown latency system %r (from %s)' % (name, ', '.join(LATENCY)))
    for name in args.burst_systems:
        stack, _, rest = name.partition('-')
        shape, _, kind = rest.partition('-')
        if name != 'huey' and (stack != 'pg' and stack != 'sqlite' or shape not in (
                'plain', 'reserved') or kind not in ('enqueue', 'enqueue_atomic', 'run_once')):
            parser.error('unknown burst system %r: huey or <pg|sqlite>-<plain|reserved>-'
                         '<enqueue|enqueue_atomic|run_once>' % name)
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
        if not os.path.exists(SPY):
            parser.error('--profile needs py-spy in this Python: %s -m pip install py-spy'
                         % sys.executable)
    return args


# -- what both parts share -----------------------------------------------------------


def has_task_api():
    sys.path.insert(0, benchsite.ROOT)
    try:
        return importlib.util.find_spec('sisy.tasks') is not None
    finally:
        sys.path.remove(benchsite.ROOT)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the benchmark's own on a free port, keeping nothing on disk."""

    def __init__(self, folder):
        self.port = free_port()
        self.process = subprocess.Popen(
            ['redis-server', '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--dir', folder], stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT)
        benchsite.wait_until(self._answers, 10, message='redis-server to answer')

    def _answers(self):
        with socket.socket() as sock:
            return sock.connect_ex(('127.0.0.1', self.port)) == 0

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stamps(exec_log):
    """{key: [epoch seconds each start]} from the functions' stamp logs."""
    found = collections.defaultdict(list)
    for path in glob.glob(exec_log + '.*'):
        with open(path) as log:
            for line in log:
                parts = line.split()
                if len(parts) == 2:
                    found[parts[0]].append(float(parts[1]))
    return found


def wait_for_stamps(exec_log, keys, deadline, alive):
    """Wait until every key has started, the deadline passes or `alive()` is false."""
    keys = set(keys)
    while True:
        found = stamps(exec_log)
        if keys <= set(found) or time.time() > deadline or not alive():
            return found
        time.sleep(0.05)


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def machine_busy():
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    with open('/proc/stat') as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def busy_share(before, after):
    """Share of the machine's CPU time that was busy between two machine_busy() readings."""
    return (after[0] - before[0]) / max(1, after[1] - before[1])


REDIS_PID = []  # the private redis-server's pid, when the script started one


def descendants(pid):
    """`pid` and every process below it."""
    children = collections.defaultdict(list)
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as stat:
                    children[int(stat.read().rsplit(')', 1)[1].split()[1])].append(int(entry))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_use(groups):
    """{group: CPU seconds so far} for {group: [pids]}."""
    return {group: sum(cpu_seconds(pid) for pid in pids) for group, pids in groups.items()}


def cpu_per_run(before, after, count, caller):
    """{group: CPU milliseconds per run} between two cpu_use() readings, with the caller's."""
    spent = {group: 1000 * (after[group] - before.get(group, 0.0)) / count for group in after}
    spent['caller'] = 1000 * caller / count
    return spent


def backend_pids(site):
    """PostgreSQL server processes serving the site's database."""
    if site.stack != 'postgresql-redis':
        return []
    connection = benchsite.psycopg2.connect(dbname='postgres', **benchsite.PG)
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> '
                           'pg_backend_pid()', (site.database,))
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def percentile(values, share):
    """The nearest-rank percentile (share 0..1) of `values` (of 50 values, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def median_of(results, key):
    values = [result[key] for result in results if result.get(key) is not None]
    return statistics.median(values) if values else None


def sisy_site(stack, templates, folder, frequency, async_commit=False):
    site = benchsite.Site(stack, templates[stack], folder, frequency=frequency)
    if async_commit:
        site.env['SISY_BENCH_ASYNC_COMMIT'] = '1'
    return site


def site_troubles(site):
    return [(name, excerpt) for name, excerpt in site.troubles()]


# -- latency ---------------------------------------------------------------------------


def sisy_latency(system, args, templates, folder):
    stack_key, kind = system.split('-', 1)
    site = sisy_site(STACK_OF[stack_key], templates, folder, args.frequency, args.async_commit)
    try:
        site.start_runworker('worker-1')
        site.start_heartbeat()
        time.sleep(1.0)  # idle: the worker waits on its channels
        returned = site.call('latency_calls', kind=kind, count=args.calls, gap_min=args.gap_min,
                             gap_max=args.gap_max, seed=int(time.time()))
        found = wait_for_stamps(site.exec_log, [key for key, _ in returned],
                                time.time() + args.deadline,
                                lambda: all(process.alive() for process in site.processes))
        result = latency_figures(returned, found)
        result['troubles'] = site_troubles(site)
        return result
    finally:
        site.cleanup(keep_files=args.keep)


def huey_latency(args, folder):
    with huey_queue(folder, 1) as (bench_huey, exec_log, consumer):
        bench_huey.stamp('W')  # warm-up: the connection, and the consumer's first task
        wait_for_stamps(exec_log, ['W'], time.time() + 30, consumer.alive)
        rng = random.Random(int(time.time()))
        returned = []
        for number in range(args.calls):
            time.sleep(rng.uniform(args.gap_min, args.gap_max))
            key = 'H%d' % number
            bench_huey.stamp(key)
            returned.append((key, time.time()))
        found = wait_for_stamps(exec_log, [key for key, _ in returned],
                                time.time() + args.deadline, consumer.alive)
        result = latency_figures(returned, found)
        result['troubles'] = ([('huey-consumer', consumer.log()[-1500:])]
                              if 'Traceback' in consumer.log() else [])
        return result


def latency_figures(returned, found):
    delays = [min(found[key]) - at for key, at in returned if key in found]
    result = {'calls': len(returned), 'started': len(delays),
              'missing': len(returned) - len(delays),
              'duplicates': sum(len(found[key]) - 1 for key, _ in returned if key in found)}
    if delays:
        result.update(p50=percentile(delays, 0.5), p99=percentile(delays, 0.99),
                      max=max(delays), min=min(delays))
    return result


def describe_latency(result):
    if 'p50' not in result:
        text = 'no call started'
    else:
        text = 'p50 %8.1f ms  p99 %8.1f ms  (min %.1f, max %.1f ms)' % (
            1000 * result['p50'], 1000 * result['p99'], 1000 * result['min'],
            1000 * result['max'])
    text += '; %d/%d started, %d duplicates' % (result['started'], result['calls'],
                                                result['duplicates'])
    return text + troubles_text(result)


def troubles_text(result):
    text = ''
    for name, excerpt in result.get('troubles', []):
        text += '\n      %s: %s' % (name, excerpt.strip().replace('\n', '\n        '))
    return text


# -- burst -----------------------------------------------------------------------------


def sisy_burst(system, args, templates, folder, number):
    stack_key, shape, kind = system.split('-')
    site = sisy_site(STACK_OF[stack_key], templates, folder, args.frequency, args.async_commit)
    if args.sql:
        site.env['SISY_BENCH_SQL_LOG'] = os.path.join(site.folder, 'sql')
    spies = []
    try:
        if shape == 'reserved':
            site.start_runworker('scheduler', SCHEDULER_CHANNELS)
        workers = [site.start_runworker('worker-%d' % (n + 1),
                                        RUN_CHANNELS if shape == 'reserved' else None)
                   for n in range(args.workers)]
        site.start_heartbeat()
        warm = site.call('warm_up', kind='run_once' if kind == 'run_once' else 'task')
        wait_for_stamps(site.exec_log, [warm], time.time() + max(args.frequency, 1) + 30,
                        lambda: True)
        if args.profile:
            spies = start_spies(args.profile, '%s-r%d' % (system, number), workers)
        groups = {'workers': [w.pid for w in workers]}
        if site.stack == 'postgresql-redis':
            groups.update(PostgreSQL=backend_pids(site), Redis=list(REDIS_PID))
        before = cpu_use(groups)
        machine = machine_busy()
        if kind == 'run_once':
            burst = site.call('run_once_burst', count=args.count)
        else:
            burst = site.call('enqueue_burst', count=args.count, atomic=kind == 'enqueue_atomic')
        found = wait_for_stamps(site.exec_log, burst['keys'], time.time() + args.deadline,
                                lambda: all(process.alive() for process in site.processes))
        done_at = time.time()
        machine = busy_share(machine, machine_busy())
        last_finish = wait_for_finishes(site, len(burst['keys']) + 1, done_at + 10)
        if 'PostgreSQL' in groups:  # a backend that started during the burst: all its CPU
            groups['PostgreSQL'] = sorted(set(groups['PostgreSQL']) | set(backend_pids(site)))
        spent = cpu_per_run(before, cpu_use(groups), args.count, burst['cpu'])
        stop_spies(spies)
        result = burst_figures(burst, found)
        result['cpu'] = spent
        result['machine_busy'] = machine
        if last_finish is not None:
            result['rate_finish'] = args.count / (last_finish - burst['started'])
        window_start = burst['started']
        if burst.get('committed') and 'last_start' in result:
            # The first harness counted from the commit of the transaction.
            result['rate_from_commit'] = args.count / (result['last_start'] - burst['committed'])
            result['hooks'] = burst['returned'] - burst['committed']
            window_start = burst['committed']
        if spies:
            result['profile'] = [(worker.name, summarise_trace(path, worker.pid, window_start,
                                                               result.get('last_start')))
                                 for worker, path in spies]
        result['troubles'] = site_troubles(site)
        if args.sql:
            site.stop_processes()  # each writes its statements' times as it exits
            result['sql'] = sql_times(os.path.join(site.folder, 'sql'),
                                      {worker.pid for worker in workers}, args.count)
        return result
    finally:
        stop_spies(spies)
        site.cleanup(keep_files=args.keep)


def sql_times(prefix, worker_pids, count):
    """{'workers' | 'others': [(kind, statements per run, ms per run)]}, largest first."""
    spent = {'workers': collections.defaultdict(lambda: [0, 0.0]),
             'others': collections.defaultdict(lambda: [0, 0.0])}
    for path in glob.glob(prefix + '.*'):
        group = 'workers' if int(path.rsplit('.', 1)[1]) in worker_pids else 'others'
        with open(path) as log:
            for name, (number, seconds) in json.load(log).items():
                spent[group][name][0] += number
                spent[group][name][1] += seconds
    return {group: sorted(((name, number / count, 1000 * seconds / count)
                           for name, (number, seconds) in kinds.items()),
                          key=lambda entry: -entry[2])
            for group, kinds in spent.items()}


def wait_for_finishes(site, count, deadline):
    """Epoch seconds of the last finish in the run table once `count` runs have ended."""
    while True:
        ended, last = site.rows(
            "SELECT COUNT(*), MAX(%s) FROM sisy_taskrun WHERE status NOT IN "
            "('pending', 'running')" % site.epoch('finished_at'))[0]
        if ended >= count or time.time() > deadline:
            return last
        time.sleep(0.1)


def huey_burst(args, folder):
    with huey_queue(folder, args.workers) as (bench_huey, exec_log, consumer):
        bench_huey.stamp('W')
        wait_for_stamps(exec_log, ['W'], time.time() + 30, consumer.alive)
        groups = {'workers': descendants(consumer.pid), 'Redis': list(REDIS_PID)}
        before = cpu_use(groups)
        machine = machine_busy()
        cpu, started = time.process_time(), time.time()
        keys = []
        for number in range(args.count):
            key = 'H%d' % number
            bench_huey.stamp(key)
            keys.append(key)
        burst = {'started': started, 'returned': time.time(), 'keys': keys,
                 'cpu': time.process_time() - cpu}
        found = wait_for_stamps(exec_log, keys, time.time() + args.deadline, consumer.alive)
        machine = busy_share(machine, machine_busy())
        result = burst_figures(burst, found)
        result['cpu'] = cpu_per_run(before, cpu_use(groups), args.count, burst['cpu'])
        result['machine_busy'] = machine
        result['troubles'] = ([('huey-consumer', consumer.log()[-1500:])]
                              if 'Traceback' in consumer.log() else [])
        return result


def burst_figures(burst, found):
    keys = burst['keys']
    starts = [min(found[key]) for key in keys if key in found]
    result = {'count': len(keys), 'started': len(starts), 'missing': len(keys) - len(starts),
              'duplicates': sum(len(found[key]) - 1 for key in keys if key in found),
              'calling': burst['returned'] - burst['started']}
    if starts:
        result['last_start'] = max(starts)
        result['first_start'] = min(starts) - burst['started']
        result['rate_start'] = len(starts) / (max(starts) - burst['started'])
    return result


def describe_burst(result):
    if 'rate_start' not in result:
        text = 'no function started'
    else:
        text = '%6.0f runs/s to the last start' % result['rate_start']
        if result.get('rate_finish'):
            text += ', %6.0f to the last finish' % result['rate_finish']
        text += '; first start %.3f s' % result['first_start']
    text += '; calling took %.2f s' % result['calling']
    if 'rate_from_commit' in result:
        text += (' in one transaction, of which %.2f s after its commit (its on_commit hooks); '
                 '%.0f runs/s from the commit' % (result['hooks'], result['rate_from_commit']))
    if 'cpu' in result:
        text += '; CPU ms/run %.2f (%s)' % (sum(result['cpu'].values()), ', '.join(
            '%s %.2f' % (group, ms) for group, ms in sorted(result['cpu'].items())))
    if 'machine_busy' in result:
        text += '; machine %.0f%% busy' % (100 * result['machine_busy'])
    text += '; %d/%d started, %d duplicates' % (result['started'], result['count'],
                                                result['duplicates'])
    for name, summary in result.get('profile', []):
        text += '\n      %s main thread: %s' % (name, summary)
    for group, kinds in sorted(result.get('sql', {}).items()):
        text += '\n      SQL of the %s (per run: statements, ms): %s' % (group, '; '.join(
            '%s %.3f, %.3f' % entry for entry in kinds[:8]))
    return text + troubles_text(result)


# -- Huey --------------------------------------------------------------------------------


class huey_queue:
    """Context: a fresh RedisHuey queue (keys of its own) with a consumer of `workers`."""

    def __init__(self, folder, workers):
        self.name = 'sisybench_%s' % benchsite.token()
        self.folder = os.path.join(folder, 'huey-%s' % self.name)
        os.makedirs(self.folder)
        self.exec_log = os.path.join(self.folder, 'exec')
        self.workers = workers
        self.consumer = None

    def __enter__(self):
        os.environ['SISY_BENCH_HUEY_NAME'] = self.name
        os.environ['SISY_BENCH_EXEC_LOG'] = self.exec_log
        sys.modules.pop('bench_huey', None)
        import bench_huey
        self.module = bench_huey
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONUNBUFFERED='1')
        self.consumer = benchsite.Process('huey-consumer', [
            os.path.join(os.path.dirname(sys.executable), 'huey_consumer'), 'bench_huey.huey',
            '-k', 'process', '-w', str(self.workers)], env, self.folder)
        return bench_huey, self.exec_log, self.consumer

    def __exit__(self, *exc_info):
        if self.consumer is not None:
            self.consumer.stop()
        client = benchsite.redis.StrictRedis(**benchsite.REDIS)
        keys = list(client.scan_iter(match='*%s*' % self.name, count=1000))
        if keys:
            client.delete(*keys)
        os.environ.pop('SISY_BENCH_EXEC_LOG', None)


# -- profiling -------------------------------------------------------------------------


def start_spies(directory, prefix, workers):
    spies = []
    for worker in workers:
        path = os.path.join(directory, '%s-%s.json' % (prefix, worker.name))
        started = time.time()
        process = subprocess.Popen(
            [SPY, 'record', '--idle', '--nonblocking', '--threads', '-r', '200', '-f',
             'chrometrace', '-o', path, '-p', str(worker.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path + '.start', 'w') as note:
            note.write('%.6f' % started)
        spies.append((worker, path, process))
    time.sleep(1.0)  # py-spy attaches
    return spies


def stop_spies(spies):
    for index, spy in enumerate(list(spies)):
        if len(spy) == 2:
            continue  # stopped already
        worker, path, process = spy
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        spies[index] = (worker, path)


def where(stack):
    """What a sampled stack of a worker's main thread was doing, in a few words."""
    names = [frame.split(' ', 1)[0] for frame in stack]
    text = ' '.join(stack)
    if 'receive_many' in names:
        return 'waiting on its channel'
    in_db = any(frame.split(' ', 1)[0] in ('execute', 'executemany', '_commit', '_rollback')
                and 'django/db/backends/' in frame for frame in stack) or 'psycopg' in text
    for part, label in (('process_tick', 'tick'), ('kill_task', 'reap'),
                        ('execute_run', 'runs'), ('run_task', 'runs')):
        if part in names:
            return '%s (%s)' % (label, 'database' if in_db else 'Python')
    return 'Channels and the rest'


def summarise_trace(path, pid, start, end):
    """Seconds of the main thread between `start` and `end` (epoch), by `where`."""
    if end is None or not os.path.exists(path):
        return 'no trace'
    with open(path + '.start') as note:
        origin = float(note.read())
    try:
        with open(path) as trace:
            events = json.load(trace)
    except ValueError:
        return 'unreadable trace'
    spent, stack, main, last = collections.Counter(), [], None, None
    for event in events:
        if main is None and 'MainThread' in event.get('name', ''):
            main = event['tid']
        if event.get('tid') != main:
            continue
        at = origin + event['ts'] / 1e6
        if last is not None:
            overlap = min(at, end) - max(last, start)
            if overlap > 0:
                spent[where(stack)] += overlap
        last = at
        if event['ph'] == 'B':
            frame = event['args'].get('filename', '')
            stack.append('%s %s' % (event['name'], frame.split('site-packages/')[-1]))
        elif stack:
            stack.pop()
    total = end - start
    return ', '.join('%s %.2f s (%.0f%%)' % (name, seconds, 100 * seconds / total)
                     for name, seconds in spent.most_common())


# -- the benchmark ---------------------------------------------------------------------


def rotated(names, number):
    return names[number % len(names):] + names[:number % len(names)] if names else []


def main():
    args = parse_args()
    try:
        import huey
    except ImportError:
        print('Huey is not installed in this Python: %s -m pip install -r '
              'requirements/bench.txt' % sys.executable, file=sys.stderr)
        return 2
    if not has_task_api():
        dropped = [name for name in args.latency_systems + args.burst_systems
                   if name.endswith('-task') or '-enqueue' in name]
        if dropped:
            print('sisy.tasks is not in this tree: leaving out %s' % ', '.join(dropped))
        args.latency_systems = [n for n in args.latency_systems if not n.endswith('-task')]
        args.burst_systems = [n for n in args.burst_systems if '-enqueue' not in n]
    folder = tempfile.mkdtemp(prefix='sisy-bench-handoff-')
    redis_server = None
    if args.redis_port:
        benchsite.REDIS['port'] = args.redis_port
    else:
        redis_server = PrivateRedis(folder)
        benchsite.REDIS['port'] = redis_server.port
        REDIS_PID.append(redis_server.process.pid)
    os.environ['SISY_BENCH_REDIS_PORT'] = str(benchsite.REDIS['port'])
    print('Huey %s; %d round(s); heartbeat every %g s; Redis on port %d;%s %s; %s' % (
        huey.__version__, args.rounds, args.frequency, benchsite.REDIS['port'],
        ' PostgreSQL synchronous_commit=off (an experiment);' if args.async_commit else '',
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), benchsite.code_state()))
    print(' '.join(sys.argv))
    print(benchsite.machine_state(), flush=True)
    stacks = {STACK_OF[name.split('-')[0]] for name in args.latency_systems + args.burst_systems
              if name != 'huey'}
    templates = {}
    latency, burst = collections.defaultdict(list), collections.defaultdict(list)
    began = time.monotonic()
    try:
        for stack in sorted(stacks):
            templates[stack] = benchsite.Template(stack, folder)
        for number in range(args.rounds):
            print('round %d' % (number + 1), flush=True)
            if 'latency' in args.parts:
                for system in rotated(args.latency_systems, number):
                    result = (huey_latency(args, folder) if system == 'huey'
                              else sisy_latency(system, args, templates, folder))
                    latency[system].append(result)
                    print('  latency %-20s %s' % (system, describe_latency(result)), flush=True)
            if 'burst' in args.parts:
                for system in rotated(args.burst_systems, number):
                    result = (huey_burst(args, folder) if system == 'huey'
                              else sisy_burst(system, args, templates, folder, number + 1))
                    burst[system].append(result)
                    print('  burst   %-20s %s' % (system, describe_burst(result)), flush=True)
    finally:
        for template in templates.values():
            template.drop()
        if redis_server is not None:
            redis_server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print('logs: %s' % folder)

    print('medians of %d round(s) (%.0f s in all; at the end: %s):' % (
        args.rounds, time.monotonic() - began, benchsite.machine_state()))
    huey_p50, huey_p99 = median_of(latency['huey'], 'p50'), median_of(latency['huey'], 'p99')
    for system in args.latency_systems if 'latency' in args.parts else []:
        p50, p99 = median_of(latency[system], 'p50'), median_of(latency[system], 'p99')
        if p50 is None:
            print('  latency %-20s no figures' % system)
            continue
        line = '  latency %-20s p50 %8.1f ms  p99 %8.1f ms' % (system, 1000 * p50, 1000 * p99)
        if system != 'huey' and huey_p50 and huey_p99:
            line += '   x Huey: p50 %.2f, p99 %.2f' % (p50 / huey_p50, p99 / huey_p99)
        line += '; missing %d, duplicates %d in all' % (
            sum(r['missing'] for r in latency[system]),
            sum(r['duplicates'] for r in latency[system]))
        print(line)
    huey_rate = median_of(burst['huey'], 'rate_start')
    for system in args.burst_systems if 'burst' in args.parts else []:
        rate = median_of(burst[system], 'rate_start')
        if rate is None:
            print('  burst   %-20s no figures' % system)
            continue
        line = '  burst   %-20s %6.0f runs/s to the last start' % (system, rate)
        finish = median_of(burst[system], 'rate_finish')
        if finish:
            line += ', %6.0f to the last finish' % finish
        from_commit = median_of(burst[system], 'rate_from_commit')
        if from_commit:
            line += ' (%.0f from the commit)' % from_commit
        if system != 'huey' and huey_rate:
            line += '   x Huey: %.2f' % (rate / huey_rate)
        for result in burst[system]:
            result['cpu_total'] = sum(result.get('cpu', {}).values()) or None
        line += '; CPU %.2f ms/run; calling %.2f s; missing %d, duplicates %d in all' % (
            median_of(burst[system], 'cpu_total') or 0, median_of(burst[system], 'calling'), sum(r['missing'] for r in burst[system]),
            sum(r['duplicates'] for r in burst[system]))
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
