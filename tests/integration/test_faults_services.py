"""Faults in the services under a Sisy site: Redis and PostgreSQL going away and coming back.

Every test here runs on servers of the test run's own (tests/integration/services.py),
never on the machine's shared PostgreSQL and Redis.
"""

import math
import os
import signal
import time

import pytest
import redis
from asgi_redis import RedisChannelLayer

from tests.integration.cluster import PG, REDIS_PORT, needs_postgresql, psycopg2, wait_until
from tests.integration.test_processes import probe_count

pytestmark = [pytest.mark.integration, pytest.mark.faults]

POSTGRESQL_REDIS = pytest.mark.parametrize(
    'private_cluster', [pytest.param('postgresql-redis', marks=needs_postgresql)], indirect=True)
# How long the Redis freeze test keeps Redis frozen once the heartbeat has said so.
FROZEN_SECONDS = float(os.environ.get('SISY_IT_FROZEN_SECONDS', 5))


def shared_pg(sql):
    """The rows `sql` returns on the machine's shared PostgreSQL."""
    connection = psycopg2.connect(dbname='postgres', **PG)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


def shared_services():
    """What identifies the running shared servers: PostgreSQL's start time, Redis's run id."""
    return (shared_pg('SELECT pg_postmaster_start_time()'),
            redis.StrictRedis(port=REDIS_PORT).info('server')['run_id'])


class Ticks:
    """Reads the heartbeat's ticks straight from the site's Redis, as a worker would."""

    def __init__(self, site):
        self.layer = RedisChannelLayer(hosts=[('127.0.0.1', site.redis_port)],
                                       prefix=site.prefix)
        self.seen = []

    def read(self):
        """Take every tick waiting in the channel; return all ticks seen so far."""
        try:
            while True:
                channel, content = self.layer.receive(['sisy.heartbeat'], block=False)
                if channel is None:
                    break
                self.seen.append(content['time'])
        except redis.ConnectionError:
            pass  # Redis is down: nothing to read now
        return self.seen


@needs_postgresql  # compares the machine's shared services before and after
def test_a_site_on_private_services_runs_tasks(private_cluster):
    shared_before = shared_services()
    private_cluster.start_site(sisy_workers=1)
    private_cluster.scenario('make_tasks', specs=[
        {'label': 'every-second', 'schedule': '* * * * * *'}])
    wait_until(lambda: probe_count(private_cluster.db, 'every-second') >= 3, 30,
               message='3 runs of the every-second task')
    private_cluster.check_health()
    assert shared_services() == shared_before
    if private_cluster.stack == 'postgresql-redis':
        assert (private_cluster.db.name,) not in shared_pg('SELECT datname FROM pg_database')
        shared_keys = redis.StrictRedis(port=REDIS_PORT).scan_iter(
            match=private_cluster.prefix + '*')
        assert list(shared_keys) == []


@needs_postgresql
def test_private_services_restart_and_the_shared_ones_are_untouched(private_postgres,
                                                                    private_redis):
    shared_before = shared_services()
    name = private_postgres.create_database('sisy_it_restart')
    try:
        private_postgres.execute('CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)', name)
        pg_started = private_postgres.execute('SELECT pg_postmaster_start_time()')
        redis_run = private_redis.client().info('server')['run_id']

        private_postgres.stop()
        private_redis.stop()
        with pytest.raises(psycopg2.OperationalError):
            private_postgres.execute('SELECT 1')
        with pytest.raises(redis.ConnectionError):
            private_redis.client().ping()

        private_postgres.restart()  # stopped already: just starts again
        private_redis.restart(down_seconds=0.5)
        assert private_postgres.execute('SELECT pg_postmaster_start_time()') != pg_started
        assert private_postgres.execute('SELECT n FROM kept', name) == [(7,)]
        assert private_redis.client().info('server')['run_id'] != redis_run
        private_postgres.restart(down_seconds=0.5)
        assert private_postgres.execute('SELECT n FROM kept', name) == [(7,)]
        assert shared_services() == shared_before
    finally:
        private_postgres.drop_database(name)


@POSTGRESQL_REDIS
def test_the_heartbeat_rides_out_a_redis_restart(private_cluster, private_redis):
    heartbeat = private_cluster.start_heartbeat()
    ticks = Ticks(private_cluster)
    wait_until(lambda: len(ticks.read()) >= 2, 10, message='ticks before the outage')

    private_redis.restart(down_seconds=5)
    back = time.time()
    ticks.seen = []  # the restart emptied Redis; count only what comes after it
    wait_until(lambda: ticks.read() and ticks.read()[-1] >= math.floor(back) + 3, 15,
               message='ticks after the outage')

    assert heartbeat.alive(), heartbeat.log()
    log = heartbeat.log()
    assert log.count('Cannot send ticks') == 1, log
    assert log.count('go through again') == 1, log
    missed = int(log.split('tick(s) missed')[0].rsplit(';', 1)[1])
    assert 3 <= missed <= 8, log
    # No backlog sent late: the ticks after the outage start at the current one
    # and go on one per period.
    assert all(tick == int(tick) for tick in ticks.seen), ticks.seen
    after = [int(tick) for tick in ticks.seen]
    assert after[0] >= math.floor(back) - 1, (back, after)
    assert after == list(range(after[0], after[0] + len(after))), after
    assert heartbeat.stop() == 0, heartbeat.log()
    private_cluster.check_health()


@POSTGRESQL_REDIS
def test_the_heartbeat_says_so_while_redis_is_frozen_and_resumes_on_the_current_tick(
        private_cluster, private_redis):
    heartbeat = private_cluster.start_heartbeat()
    ticks = Ticks(private_cluster)
    wait_until(lambda: len(ticks.read()) >= 2, 10, message='ticks before the freeze')
    ticks.seen = []
    private_redis.freeze()  # takes connections, answers nothing
    try:
        # The period is 1 s: the next tick hangs within 1 s, and is reported 1 s later.
        wait_until(lambda: 'has not gone out' in heartbeat.log(), 5,
                   message='the warning of the hung send')
        time.sleep(FROZEN_SECONDS)  # the stall itself, not a wait for a condition
    finally:
        private_redis.thaw()
    thawed = time.time()
    # Within about a second of the thaw; the bound leaves room for a busy machine.
    wait_until(lambda: len(ticks.read()) >= 2, 5, interval=0.05,
               message='the hung tick and the current one')
    wait_until(lambda: ticks.read()[-1] >= math.floor(thawed) + 2, 5,
               message='ticks after the freeze')

    assert heartbeat.alive(), heartbeat.log()
    log = heartbeat.log()
    assert log.count('has not gone out') == 1, log
    assert log.count('answers again') == 1, log
    hung = float(log.split(' has not gone out')[0].rsplit('Tick ', 1)[1])
    # The hung tick goes out late when Redis answers (workers ignore it as stale);
    # then the current tick at once, not the ones in between, and on one per period.
    assert ticks.seen[0] == hung, (hung, ticks.seen)
    after = [int(tick) for tick in ticks.seen[1:]]
    assert after == ticks.seen[1:], ticks.seen
    assert math.floor(thawed) <= after[0] <= math.floor(thawed) + 1, (thawed, after)
    assert after == list(range(after[0], after[0] + len(after))), after
    assert heartbeat.stop() == 0, heartbeat.log()
    private_cluster.check_health()


@POSTGRESQL_REDIS
def test_sigterm_stops_the_heartbeat_during_an_outage(private_cluster, private_redis):
    heartbeat = private_cluster.start_heartbeat()
    private_redis.stop()
    wait_until(lambda: 'Cannot send ticks' in heartbeat.log(), 10, message='the outage warning')
    started = time.monotonic()
    assert heartbeat.stop(signal.SIGTERM) == 0, heartbeat.log()
    assert time.monotonic() - started < 2, heartbeat.log()
    assert 'Stopped while channel sisy.heartbeat could not be reached' in heartbeat.log()


def statuses(db):
    return dict(db.rows('SELECT status, COUNT(*) FROM sisy_taskrun GROUP BY status'))


@POSTGRESQL_REDIS
def test_a_redis_restart_during_a_burst_loses_and_repeats_no_job(private_cluster, private_redis):
    cluster = private_cluster
    cluster.start_site(restart_workers=True)
    db = cluster.db
    cluster.scenario('burst', count=1000, lead=3)

    def burst_runs():
        return db.value('SELECT COUNT(*) FROM probe_proberun WHERE tag LIKE ?', ['burst-%'])

    wait_until(lambda: burst_runs() >= 100, 60, interval=0.2, message='the burst under way')
    private_redis.restart(down_seconds=1)  # every message in the layer is gone with it
    wait_until(lambda: burst_runs() >= 1000 and db.value(
        "SELECT COUNT(*) FROM sisy_task WHERE label = 'tests.integration.probe.tasks.record'")
        == 0, 180, interval=0.5, message='all 1,000 jobs to run and be deleted')
    tags = [tag for tag, in db.rows('SELECT tag FROM probe_proberun WHERE tag LIKE ?',
                                    ['burst-%'])]
    assert sorted(tags) == sorted('burst-%d' % n for n in range(1000)), 'a job ran twice'
    assert set(statuses(db)) == {'ok'}, statuses(db)
    for worker in cluster.named('sisy-worker'):
        assert worker.alive(), 'the wrapper itself died:\n' + worker.log()[-2000:]
    [heartbeat] = cluster.named('heartbeat')
    assert heartbeat.alive(), heartbeat.log()


@POSTGRESQL_REDIS
def test_a_postgresql_restart_during_steady_runs_leaves_nothing_stuck_or_misrecorded(
        private_cluster, private_postgres):
    cluster = private_cluster
    cluster.start_site()
    db = cluster.db
    cluster.scenario('make_tasks', specs=[{'label': 'every-2s', 'schedule': '* * * * * */2'}])
    wait_until(lambda: probe_count(db, 'every-2s') >= 3, 30, message='runs before the outage')
    # A function under way when the database goes: it wakes up in the outage and
    # handles its own error, which leaves its worker's connection closed.
    cluster.scenario('make_tasks', specs=[{
        'label': 'sleeper', 'function': 'tests.integration.probe.tasks.sleep_then_record',
        'iterations': 1, 'wait_for_schedule': False}])
    wait_until(lambda: db.rows("SELECT status FROM sisy_taskrun WHERE task_label = 'sleeper'")
               == [('running',)], 10, interval=0.05, message='the sleeper to start')
    private_postgres.restart(down_seconds=3)
    after = probe_count(db, 'every-2s')
    wait_until(lambda: probe_count(db, 'every-2s') >= after + 4, 40,
               message='runs after the outage')
    wait_until(lambda: not statuses(db).get('pending') and statuses(db).get('running', 0) <= 1,
               20, message='the runs under way to end')
    runs = db.rows("SELECT id, scheduled_for, status FROM sisy_taskrun "
                   "WHERE task_label = 'every-2s'")
    slots = [slot for _, slot, _ in runs]
    assert len(slots) == len(set(slots)), 'a slot was claimed twice'
    called = {run_id for run_id, in db.rows(
        "SELECT run_id FROM probe_proberun WHERE label = 'every-2s'")}
    assert not [run for run in runs if run[2] == 'lost'], \
        'runs recorded lost: %s (of which completed: %s)' % (
            [run for run in runs if run[2] == 'lost'],
            [run for run in runs if run[2] == 'lost' and run[0] in called])
    assert db.value("SELECT COUNT(*) FROM sisy_task WHERE running = %s AND id NOT IN "
                    "(SELECT task_id FROM sisy_taskrun WHERE task_id IS NOT NULL AND "
                    "status IN ('pending', 'running'))" % 'true') == 0
    assert db.rows("SELECT status FROM sisy_taskrun WHERE task_label = 'sleeper'") \
        == [('ok',)]
    for worker in cluster.named('sisy-worker'):
        log = worker.log()
        assert worker.alive(), '%s died:\n%s' % (worker.name, log[-3000:])
        assert 'Traceback' not in log and 'Error processing message' not in log, log[-3000:]
        # One outage: at most one line from the watchdog when it starts, one when it ends.
        outage = log.count('The watchdog could not reach the database')
        assert outage <= 1 and log.count('The watchdog reaches the database again') == outage, \
            log[-3000:]
