"""A small harness for the benchmarks: real Sisy processes on a database of their own.

`Site` is one Sisy site: a fresh copy of a migrated template database (PostgreSQL
on 127.0.0.1:5432, or an SQLite file), a channel layer prefix of its own
(Redis on 127.0.0.1:6379, or the port in SISY_BENCH_REDIS_PORT; or asgi_ipc
shared memory), and the processes
started for it (``runworker``, ``sisy_heartbeat``), each logging to a file.
`cleanup()` stops the processes, drops the database and deletes the layer's
keys or shared memory; nothing else on the shared servers is touched.
"""

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid

import psycopg2
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEMO = os.path.join(ROOT, 'extra', 'demo')
PYTHON = sys.executable
PG = {'user': 'postgres', 'host': '127.0.0.1', 'port': 5432}
REDIS = {'host': '127.0.0.1', 'port': int(os.environ.get('SISY_BENCH_REDIS_PORT', 6379))}
STACKS = ('postgresql-redis', 'sqlite-ipc')

sys.path.insert(0, ROOT)
from tests.integration.cluster import Process, pg_admin, wait_until  # noqa: E402,F401  (the tests' helpers)
SISY_WORKER = ['runworker', '--exclude-channels=http.*', '--exclude-channels=websocket.*']


def token():
    return uuid.uuid4().hex[:10]


def rss_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB, from /proc/PID/status."""
    values = {}
    with open('/proc/%d/status' % pid) as status:
        for line in status:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                name, amount = line.split()[:2]
                values[name.rstrip(':')] = int(amount)
    return values['VmRSS'], values['VmHWM']


class Template:
    """A migrated database of one stack, made once per invocation, to copy sites from."""

    def __init__(self, stack, folder):
        self.stack = stack
        if stack == 'sqlite-ipc':
            self.name = os.path.join(folder, 'template.sqlite3')
        else:
            self.name = 'sisy_bench_template_%s' % token()
            pg_admin('CREATE DATABASE "%s"' % self.name)
        try:
            Site(stack, self, folder, make_database=False).manage('migrate', '-v', '0')
        except BaseException:
            self.drop()
            raise

    def drop(self):
        if self.stack == 'postgresql-redis':
            pg_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)


class Site:
    def __init__(self, stack, template, folder, make_database=True, frequency=1):
        self.stack = stack
        self.tag = token()
        self.folder = os.path.join(folder, '%s-%s' % (stack, self.tag))
        os.makedirs(self.folder)
        self.processes = []
        if not make_database:
            self.database = template.name
        elif stack == 'sqlite-ipc':
            self.database = os.path.join(self.folder, 'sisy.sqlite3')
            for suffix in ('', '-wal'):
                if os.path.exists(template.name + suffix):
                    shutil.copyfile(template.name + suffix, self.database + suffix)
        else:
            self.database = 'sisy_bench_%s' % self.tag
            pg_admin('CREATE DATABASE "%s" TEMPLATE "%s"' % (self.database, template.name))
        self.owns_database = make_database
        self.prefix = ('sisy-bench-%s:' % self.tag if stack == 'postgresql-redis'
                       else 'sisy-bench-%s' % self.tag)
        self.exec_log = os.path.join(self.folder, 'exec')
        self.python = PYTHON  # the interpreter of the processes started (not of manage())
        self.env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT, DEMO]), PYTHONUNBUFFERED='1',
            DJANGO_SETTINGS_MODULE='bench_settings', SISY_BENCH_STACK=stack,
            SISY_BENCH_DATABASE=self.database, SISY_BENCH_PREFIX=self.prefix,
            SISY_BENCH_EXEC_LOG=self.exec_log, SISY_HEARTBEAT_FREQUENCY=str(frequency))

    # -- in the site's own Python ----------------------------------------------------

    def manage(self, *args, timeout=300):
        result = subprocess.run([PYTHON, '-m', 'django'] + list(args), cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=timeout)
        if result.returncode:
            raise RuntimeError('manage.py %s failed:\n%s%s' % (' '.join(args), result.stdout,
                                                               result.stderr))
        return result.stdout

    def call(self, function, **kwargs):
        """bench_tasks.<function>(**kwargs) inside the site; its JSON result."""
        code = ('import json, bench_tasks; print("RESULT " + json.dumps('
                'bench_tasks.%s(**json.loads(%r))))' % (function, json.dumps(kwargs)))
        return json.loads(self.manage('shell', '-c', code).split('RESULT ', 1)[1])

    # -- processes -------------------------------------------------------------------

    def start(self, name, args, ready, profile=None):
        """Start `manage.py <args>`; with `profile`, under cProfile writing to that file."""
        python = [self.python] + (['-m', 'cProfile', '-o', profile] if profile else [])
        process = Process(name, python + ['-m', 'django'] + args, self.env, self.folder)
        self.processes.append(process)
        wait_until(lambda: ready in process.log() or not process.alive(), 60,
                   message='%s to start' % name)
        if not process.alive():
            raise RuntimeError('%s exited:\n%s' % (name, process.log()[-3000:]))
        return process

    def start_workers(self, count, profile_dir=None):
        return [self.start('worker-%d' % (number + 1), SISY_WORKER, 'Listening on channels',
                           profile=profile_dir and os.path.join(
                               profile_dir, '%s-worker-%d.prof' % (self.stack, number + 1)))
                for number in range(count)]

    def start_heartbeat(self):
        return self.start('heartbeat', ['sisy_heartbeat'], 'Heartbeat started')

    def start_runworker(self, name, channels=None, profile=None):
        """A ``runworker`` on Sisy's channels, or only on `channels` (fnmatch patterns)."""
        args = (['runworker'] + ['--only-channels=%s' % channel for channel in channels]
                if channels else SISY_WORKER)
        return self.start(name, args, 'Listening on channels', profile=profile)

    def troubles(self):
        """Processes that died or logged a traceback: [(name, excerpt)]."""
        found = []
        for process in self.processes:
            log = process.log()
            if 'Traceback' in log:
                at = log.index('Traceback')
                found.append((process.name, log[at:at + 1500]))
            elif not process.alive():
                found.append((process.name, 'exited with %s' % process.popen.returncode))
        return found

    # -- reading the database --------------------------------------------------------

    def rows(self, sql, params=()):
        if self.stack == 'sqlite-ipc':
            connection = sqlite3.connect(self.database, timeout=30)
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.close()
        connection = psycopg2.connect(dbname=self.database, **PG)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.replace('?', '%s'), params)
                return cursor.fetchall()
        finally:
            connection.close()

    def epoch(self, column):
        """SQL for a datetime column as epoch seconds (float), on either backend."""
        if self.stack == 'sqlite-ipc':
            return "(julianday(%s) - 2440587.5) * 86400.0" % column
        return 'EXTRACT(EPOCH FROM %s)::float8' % column

    def executions(self):
        """Calls of the no-op function, from the processes' execution logs: [(label, run_id)]."""
        calls = []
        for path in glob.glob(self.exec_log + '.*'):
            with open(path) as log:
                calls += [tuple(line.split()) for line in log if line.strip()]
        return calls

    # -- the end -----------------------------------------------------------------------

    def stop_processes(self):
        for process in reversed(self.processes):
            process.stop()

    def cleanup(self, keep_files=False):
        self.stop_processes()
        if self.stack == 'sqlite-ipc':
            for path in (glob.glob('/dev/shm/%s-*' % self.prefix)
                         + glob.glob('/dev/shm/sem.%s-*' % self.prefix)):
                os.unlink(path)
        else:
            client = redis.StrictRedis(**REDIS)
            keys = list(client.scan_iter(match=self.prefix + '*', count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
            if self.owns_database:
                pg_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.database)
        if not keep_files:
            shutil.rmtree(self.folder, ignore_errors=True)


def code_state():
    """The commit measured, and whether sisy/ had uncommitted changes then.

    SISY_BENCH_CODE, if set, says it instead (for a copy made with git archive).
    """
    if os.environ.get('SISY_BENCH_CODE'):
        return os.environ['SISY_BENCH_CODE']
    def git(*args):
        return subprocess.run(['git'] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True).stdout.rstrip()
    changed = git('status', '--porcelain', '--', 'sisy').splitlines()
    return 'commit %s%s' % (git('rev-parse', '--short', 'HEAD').strip() or '?',
                            ' + uncommitted changes in %s' % ', '.join(
                                line[3:] for line in changed) if changed else '')


def machine_state():
    """Cores and load average: other work on the machine skews every figure."""
    with open('/proc/loadavg') as loadavg:
        one, five = loadavg.read().split()[:2]
    return '%d cores, load average %s (1 min), %s (5 min)' % (os.cpu_count(), one, five)
