"""Redis and PostgreSQL servers that belong to the test run, so fault tests may stop them.

The machine's shared services (127.0.0.1:5432 and :6379) are never touched here:
each server below listens on a free port and keeps its files in its own
temporary folder, removed by `cleanup()`.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from tests.integration.cluster import free_port, psycopg2, wait_until


class PrivateRedis:
    """A redis-server child process on a free 127.0.0.1 port, with no persistence."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix='sisy-it-redis-')
        self.port = free_port()
        self.process = None
        self.log_path = os.path.join(self.folder, 'redis.log')

    @property
    def url(self):
        return 'redis://127.0.0.1:%d/0' % self.port

    def client(self):
        return redis.StrictRedis(host='127.0.0.1', port=self.port, socket_timeout=5)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def _answers(self):
        try:
            return self.client().ping()
        except redis.ConnectionError:
            return False

    def start(self):
        """Start the server on its port (the same one every time); return when it answers."""
        if self.running():
            return
        argv = ['redis-server', '--port', str(self.port), '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--daemonize', 'no',
                '--dir', self.folder, '--logfile', self.log_path]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self._answers() or not self.running(), 10,
                   message='redis-server on port %d' % self.port)
        assert self.running(), 'redis-server did not start:\n' + self._log()

    def freeze(self):
        """Stop the server process (SIGSTOP): connections are accepted, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        """Let a frozen server go on (SIGCONT): it answers what waited meanwhile."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        """Stop the server; whatever it held is gone (nothing is saved)."""
        if self.running():
            self.thaw()  # a frozen server would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, down_seconds=0):
        """Stop the server, keep it down for `down_seconds`, start it again on the same port."""
        self.stop()
        time.sleep(down_seconds)  # the outage itself, not a wait for a condition
        self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _log(self):
        with open(self.log_path) as log:
            return log.read()


def postgres_bin():
    """The bin folder of the newest PostgreSQL installed under /usr/lib/postgresql."""
    folders = glob.glob('/usr/lib/postgresql/*/bin')
    if not folders:
        raise RuntimeError('No PostgreSQL server found under /usr/lib/postgresql/*/bin')
    return max(folders, key=lambda path: [int(part) for part in re.findall(r'\d+', path)])


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb into a temporary folder) on a free port.

    As root, the folder belongs to the postgres user and the server runs as that
    user, since PostgreSQL refuses to run as root. Durability is off for speed.
    """

    def __init__(self):
        self.bin = postgres_bin()
        self.folder = tempfile.mkdtemp(prefix='sisy-it-pg-')
        self.data = os.path.join(self.folder, 'data')
        self.log_path = os.path.join(self.folder, 'postgres.log')
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user='postgres', group='postgres')
            self.as_user = ['runuser', '-u', 'postgres', '--']
        self._run('initdb', '-D', self.data, '-U', 'postgres', '--auth=trust',
                  '--encoding=UTF8', '--no-sync')
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as conf:
            conf.write('\n# sisy integration tests\n'
                       'port = %d\n' % self.port +
                       "listen_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = '%s'\n" % self.folder +
                       'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n')

    @property
    def dsn(self):
        return {'user': 'postgres', 'host': '127.0.0.1', 'port': self.port}

    def _run(self, program, *args, check=True):
        result = subprocess.run(self.as_user + [os.path.join(self.bin, program)] + list(args),
                                cwd=self.folder, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=120)
        assert result.returncode == 0 or not check, '%s %s failed:\n%s' % (
            program, ' '.join(args), result.stdout)
        return result.returncode

    def running(self):
        return self._run('pg_ctl', '-D', self.data, 'status', check=False) == 0

    def start(self):
        """Start the server on its port and data (the same every time); return when ready."""
        if not self.running():
            self._run('pg_ctl', '-D', self.data, '-l', self.log_path, '-w', '-t', '60', 'start')

    def stop(self):
        """Stop the server in fast mode: sessions are ended, open transactions rolled back."""
        if self.running():
            self._run('pg_ctl', '-D', self.data, '-m', 'fast', '-w', '-t', '60', 'stop')

    def restart(self, down_seconds=0):
        """Stop the server, keep it down for `down_seconds`, start it again."""
        self.stop()
        time.sleep(down_seconds)  # the outage itself, not a wait for a condition
        self.start()

    def execute(self, sql, dbname='postgres'):
        connection = psycopg2.connect(dbname=dbname, **self.dsn)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else None
        finally:
            connection.close()

    def create_database(self, name, template=None):
        sql = 'CREATE DATABASE "%s"' % name
        self.execute(sql + (' TEMPLATE "%s"' % template if template else ''))
        return name

    def drop_database(self, name):
        self.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
