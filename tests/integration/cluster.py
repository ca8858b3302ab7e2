"""Start and watch real Sisy processes for one test: heartbeat(s), workers, daphne.

The test process never imports the project's settings; it reads the shared
database with plain sqlite3 / psycopg2 and talks HTTP to daphne.

The stacks are SQLite + asgi_ipc and PostgreSQL + Redis. On Python 3.11 the
psycopg2 that Django 2.2 needs (< 2.9) does not import, so there the Redis
stack keeps its database in SQLite (``sqlite-redis``) and the tests that need
PostgreSQL itself are skipped with NO_POSTGRESQL.
"""

import datetime as dt
import glob
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis

from tests import NO_POSTGRESQL

try:
    import psycopg2
except ImportError:
    if sys.version_info < (3, 11):
        raise  # PostgreSQL is part of every run on Python 3.9 and 3.10
    psycopg2 = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, 'extra', 'demo')
BIN = os.path.dirname(sys.executable)
# The machine's shared services; the private ones of tests/integration/services.py
# listen on other ports, which Cluster, Database and clear_layer take as arguments.
PG = {'user': 'postgres', 'host': '127.0.0.1', 'port': 5432}
REDIS_PORT = 6379
STACKS = ('sqlite-ipc', 'postgresql-redis' if psycopg2 else 'sqlite-redis')
needs_postgresql = pytest.mark.skipif(psycopg2 is None, reason=NO_POSTGRESQL)
# What must never appear in a process's log.
TROUBLE = re.compile(r'Traceback|ChannelFull|RuntimeError|database is locked|deadlocked')
# A probe function failing on purpose: its traceback in a worker's log is expected.
PLANNED_FAILURE = re.compile(r'^Traceback \(most recent call last\):\n(?:[ \t].*\n)*'
                             r'tests\.integration\.probe\.tasks\.PlannedFailure: .*$', re.M)
SISY_WORKER = ['runworker', '--exclude-channels=http.*', '--exclude-channels=websocket.*']
WEB_WORKER = ['runworker', '--only-channels=http.*', '--only-channels=websocket.*']


def wait_until(predicate, timeout, interval=0.1, message='condition'):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('Timed out after %s s waiting for %s (last: %r)'
                                 % (timeout, message, value))
        time.sleep(interval)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def on_sqlite(stack):
    return stack.startswith('sqlite-')


def on_redis(stack):
    return stack.endswith('-redis')


def parse_time(value):
    """A datetime from either backend as an aware UTC datetime."""
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)


# -- databases -----------------------------------------------------------------------


def pg_admin(sql):
    connection = psycopg2.connect(dbname='postgres', **PG)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def drop_pg_database(name):
    pg_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


class Database:
    """Read-only queries against one test's database, whichever the backend."""

    def __init__(self, stack, name, pg_port=PG['port']):
        self.stack, self.name = stack, name
        self.pg = dict(PG, port=pg_port)

    def rows(self, sql, params=()):
        if on_sqlite(self.stack):
            connection = sqlite3.connect(self.name, timeout=30)
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.close()
        connection = psycopg2.connect(dbname=self.name, **self.pg)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.replace('?', '%s'), params)
                return cursor.fetchall()
        finally:
            connection.close()

    def value(self, sql, params=()):
        return self.rows(sql, params)[0][0]


# -- processes -----------------------------------------------------------------------


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, env, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, '%s.log' % name)
        self.log_file = open(self.log_path, 'w')
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def log(self):
        with open(self.log_path, errors='replace') as log:
            return log.read()

    def alive(self):
        return self.popen.poll() is None

    def stop(self, signum=signal.SIGTERM, timeout=10):
        """Signal the process and wait for it; kill it if it does not stop in time."""
        if self.alive():
            self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log_file.close()
        return self.popen.returncode


class Cluster:
    """One test's Sisy site: database, channel layer prefix and processes.

    `pg_port` and `redis_port` say where the site's PostgreSQL and Redis listen
    (PostgreSQL and Redis stacks only); the processes get them as SISY_IT_PG_PORT and
    SISY_IT_REDIS_PORT.
    """

    def __init__(self, stack, database, prefix, log_dir, pg_port=PG['port'],
                 redis_port=REDIS_PORT):
        self.stack = stack
        self.db = Database(stack, database, pg_port)
        self.redis_port = redis_port
        self.prefix = prefix
        self.log_dir = log_dir
        self.port = None
        self.processes = []
        self.env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([ROOT, DEMO]), PYTHONUNBUFFERED='1',
            DJANGO_SETTINGS_MODULE='tests.integration.settings', SISY_DEMO_STACK=stack,
            SISY_IT_DATABASE=database, SISY_IT_PREFIX=prefix,
            SISY_IT_PG_PORT=str(pg_port), SISY_IT_REDIS_PORT=str(redis_port))

    # running Django inside the project

    def manage(self, *args, timeout=120):
        """Run a management command to completion; return its stdout."""
        result = subprocess.run([sys.executable, '-m', 'django'] + list(args), cwd=ROOT,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=timeout)
        assert result.returncode == 0, 'manage.py %s failed:\n%s%s' % (
            ' '.join(args), result.stdout, result.stderr)
        return result.stdout

    def scenario(self, function, **kwargs):
        """Call tests.integration.probe.scenarios.<function>(**kwargs) in the project."""
        code = ('import json; from tests.integration.probe import scenarios; '
                'print("RESULT " + json.dumps(scenarios.%s(**json.loads(%r))))'
                % (function, json.dumps(kwargs)))
        output = self.manage('shell', '-c', code)
        return json.loads(output.split('RESULT ', 1)[1])

    def use_default_heartbeat(self):
        """Leave SISY_HEARTBEAT_FREQUENCY unset in the processes started from now: Sisy's 60 s."""
        self.env['SISY_IT_HEARTBEAT_FREQUENCY'] = 'default'

    # processes

    def start(self, name, argv):
        process = Process(name, argv, self.env, self.log_dir)
        self.processes.append(process)
        return process

    def start_heartbeat(self, name='heartbeat'):
        process = self.start(name, [sys.executable, '-m', 'django', 'sisy_heartbeat'])
        wait_until(lambda: 'Heartbeat started' in process.log() or not process.alive(), 30,
                   message='%s to start' % name)
        assert process.alive(), process.log()
        return process

    def start_site(self, heartbeats=1, sisy_workers=2, restart_workers=False, web=True,
                   workers=()):
        """daphne, a web worker, Sisy workers and heartbeat(s), each ready to work.

        With `restart_workers`, each Sisy worker runs under the demo's
        keep-running wrapper, as a process manager restarts it when it exits.
        Without `web`, no daphne and no web worker. `workers`: more workers, as
        (name, runworker arguments) pairs; the Sisy workers exclude the channels
        those take with --only-channels, so each such channel is theirs alone.
        """
        wrapper = [os.path.join(DEMO, 'keep-running')] if restart_workers else []
        theirs = ['--exclude-channels=' + arg.split('=', 1)[1] for _, argv in workers
                  for arg in argv if arg.startswith('--only-channels=')]
        started = []
        if web:
            self.port = free_port()
            self.start('daphne', [os.path.join(BIN, 'daphne'), '-b', '127.0.0.1', '-p',
                                  str(self.port), 'demo.asgi:channel_layer'])
            started.append(self.start('web-worker',
                                      [sys.executable, '-m', 'django'] + WEB_WORKER))
        for number in range(sisy_workers):
            started.append(self.start('sisy-worker-%d' % (number + 1), wrapper + [
                sys.executable, '-m', 'django'] + SISY_WORKER + theirs))
        for name, argv in workers:
            started.append(self.start(name, [sys.executable, '-m', 'django'] + list(argv)))
        for worker in started:
            wait_until(lambda: 'Listening on channels' in worker.log() or not worker.alive(),
                       30, message='%s to listen' % worker.name)
            assert worker.alive(), worker.log()
        if web:
            wait_until(self._daphne_up, 30, message='daphne on port %s' % self.port)
        for number in range(heartbeats):
            self.start_heartbeat('heartbeat-%d' % (number + 1))

    def _daphne_up(self):
        with socket.socket() as sock:
            return sock.connect_ex(('127.0.0.1', self.port)) == 0

    def named(self, prefix):
        return [process for process in self.processes if process.name.startswith(prefix)]

    def check_health(self):
        """All workers still alive and no process logged a traceback or a full channel.

        A probe function's PlannedFailure is no trouble: its traceback is left out.
        """
        for worker in self.named('sisy-worker') + self.named('web-worker'):
            assert worker.alive(), '%s died:\n%s' % (worker.name, worker.log()[-3000:])
        for process in self.processes:
            log = PLANNED_FAILURE.sub('', process.log())
            found = TROUBLE.search(log)
            assert not found, '%s logged %r:\n%s' % (
                process.name, found.group(0), log[max(0, found.start() - 2000):found.start() + 2000])

    def stop_all(self):
        for process in reversed(self.processes):
            process.stop()

    # HTTP

    def browser(self):
        """A WebClient on daphne with a cookie jar of its own, as one visitor's browser."""
        return WebClient('http://127.0.0.1:%d' % self.port)


class WebClient:
    """GETs and form POSTs to a site, keeping its cookies (session and CSRF) between them."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        """(status, body) of a GET; an HTTP error's status too, rather than an exception."""
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get_json(self, path):
        status, body = self.get(path)
        assert status == 200, 'GET %s: %s\n%s' % (path, status, body[:2000])
        return json.loads(body)

    def post_form(self, page, action, fields=None):
        """GET `page` for its CSRF token, then POST `fields` to `action`; return the page after."""
        html = self.opener.open(self.base + page, timeout=30).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        data = dict(fields or {}, csrfmiddlewaretoken=token)
        request = urllib.request.Request(
            self.base + action, data=urllib.parse.urlencode(data).encode(),
            headers={'Referer': self.base + page})
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()


    def admin(self, username, password):
        """An AdminClient logged in to this site's admin (the account must exist)."""
        return AdminClient('http://127.0.0.1:%d' % self.port, username, password)


class _KeepRedirect(urllib.request.HTTPRedirectHandler):
    """Hand a redirect back as the response instead of following it."""

    def redirect_request(self, *args, **kwargs):
        return None


class AdminClient:
    """A browser's session in the Django admin: logs in, then posts changelist actions.

    Redirects come back as they are (302), not followed, so a caller times the
    moment the view answered.
    """

    def __init__(self, base, username, password):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _KeepRedirect())
        status, _ = self.post('/admin/login/', {'username': username, 'password': password,
                                                'next': '/admin/'})
        assert status == 302, 'logging in as %r failed' % username

    def get(self, page):
        with self.opener.open(self.base + page, timeout=30) as response:
            return response.read().decode()

    def post(self, page, fields):
        """POST `fields` to `page` with the page's CSRF token; return (status, body)."""
        return self._send(self.request(page, fields))

    def request(self, page, fields):
        """A POST of `fields` to `page`, with the CSRF token of the page as it is now."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(page)).group(1)
        data = urllib.parse.urlencode(dict(fields, csrfmiddlewaretoken=token), doseq=True)
        return urllib.request.Request(self.base + page, data=data.encode(),
                                      headers={'Referer': self.base + page})

    def action(self, changelist, action, pks):
        """Run a changelist action on the rows `pks`; return (status, sent, answered).

        status is 302 when the action ran; sent and answered are the epoch times
        the POST went out and the answer came back.
        """
        request = self.request(changelist, {'action': action, 'index': 0, 'select_across': 0,
                                            '_selected_action': [str(pk) for pk in pks]})
        sent = time.time()
        status, _ = self._send(request)
        return status, sent, time.time()

    def _send(self, request):
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as response:  # the redirect, or an error page
            return response.code, response.read().decode()


# -- channel layers ------------------------------------------------------------------


def clear_layer(stack, prefix, redis_port=REDIS_PORT):
    """Remove what a test's channel layer left behind: shared memory or Redis keys."""
    if not on_redis(stack):
        for path in glob.glob('/dev/shm/%s-*' % prefix) + glob.glob('/dev/shm/sem.%s-*' % prefix):
            os.unlink(path)
        return
    client = redis.StrictRedis(host='127.0.0.1', port=redis_port)
    keys = list(client.scan_iter(match=prefix + '*', count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def copy_sqlite(source, target):
    for suffix in ('', '-wal'):
        if os.path.exists(source + suffix):
            shutil.copyfile(source + suffix, target + suffix)
