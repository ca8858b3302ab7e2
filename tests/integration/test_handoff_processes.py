"""Immediate runs and hand-off jobs (sisy.tasks) on real processes, at the default heartbeat.

Ticks come once a minute there, so a run that starts within a second of its
call, away from the minute, was started by the call's own doorbell. Each test
runs on both stacks (SQLite + asgi_ipc, PostgreSQL + Redis).
"""

import datetime as dt
import math
import socket
import time

import pytest

from tests.integration.cluster import parse_time, wait_until

pytestmark = pytest.mark.integration

PERIOD = 60.0  # Sisy's default SISY_HEARTBEAT_FREQUENCY
# From a call's return (or its transaction's commit) to its function's start.
BOUND = dt.timedelta(seconds=1)
FAIL_FIRST = 'tests.integration.probe.tasks.record_then_fail_first'
YEARLY = '0 0 1 1 *'
EMAILS_WORKER = ['runworker', '--only-channels=sisy.run_task.emails']


def start_at_default_heartbeat(cluster, **site):
    cluster.use_default_heartbeat()
    cluster.start_site(**site)
    for heartbeat in cluster.named('heartbeat'):
        assert 'a tick every 60.0 s' in heartbeat.log(), heartbeat.log()


def last_tick(db):
    """The latest tick any worker has handled (aware), or None."""
    ticks = [parse_time(tick) for tick, in db.rows('SELECT tick FROM sisy_tickrecord')]
    return max(ticks) if ticks else None


def wait_clear_of_ticks(db, seconds):
    """Make sure the next tick is at least `seconds` away: if it is nearer, wait until a
    worker has handled it. Returns the time (aware) from which no tick is due."""
    now = time.time()
    tick = (math.floor(now / PERIOD) + 1) * PERIOD
    if tick - now < seconds:
        due = dt.datetime.fromtimestamp(tick, dt.timezone.utc)
        wait_until(lambda: time.time() > tick + 2 and (last_tick(db) or due) >= due,
                   seconds + 30, message='the tick at %s to be handled' % due)
    return dt.datetime.now(dt.timezone.utc)


def ticks_handled_between(db, start, end):
    return [(worker, parse_time(at)) for worker, at in db.rows(
        'SELECT worker, processed_at FROM sisy_tickrecord')
        if start <= parse_time(at) <= end]


def probes(db, tag):
    """(attempt, start, pid, run id) of each call the probe function recorded for `tag`."""
    return [(attempt, parse_time(at), pid, run_id) for attempt, at, pid, run_id in db.rows(
        'SELECT attempt, at, pid, run_id FROM probe_proberun WHERE tag = ? ORDER BY id', [tag])]


def first_start(db, tag, attempt=1):
    starts = [at for number, at, _, _ in probes(db, tag) if number == attempt]
    assert len(starts) == 1, 'attempt %d of %r ran %d times' % (attempt, tag, len(starts))
    return starts[0]


def finished_at(db, run_id):
    return parse_time(db.value('SELECT finished_at FROM sisy_taskrun WHERE id = ?', [run_id]))


def runs_under_way(db):
    return db.value("SELECT COUNT(*) FROM sisy_taskrun WHERE status IN ('pending', 'running')")


def test_immediate_runs_start_within_a_second_and_run_once(cluster, figures):
    """Every immediate kind starts within a second of its call (the next tick being far
    away); nothing runs from a rolled-back transaction; a committed job and run_once
    run exactly once though two heartbeats' ticks come at the moment of the commit."""
    start_at_default_heartbeat(cluster, heartbeats=2)
    db = cluster.db
    cluster.scenario('make_superuser', username='admin', password='admin-secret')
    run_now = cluster.scenario('make_tasks', specs=[
        {'label': 'run-now', 'schedule': YEARLY, 'function': FAIL_FIRST, 'retries': 1,
         'retry_delay': 0}])['run-now']['pk']
    admin = cluster.admin('admin', 'admin-secret')

    # 1. Each immediate kind, one at a time, with no tick due meanwhile.
    clear_from = wait_clear_of_ticks(db, 12)
    status, sent, answered = admin.action('/admin/sisy/task/', 'run_now', [run_now])
    assert status == 302
    wait_until(lambda: len(probes(db, 'run-now')) == 2, 5, interval=0.02,
               message='Run now and its retry')
    calls = cluster.scenario('immediate_calls', timeout=10)
    latencies = {}
    for kind, call in sorted(calls.items()):
        if kind == 'job_retry':
            continue
        started = first_start(db, call['tag'])
        assert started >= parse_time(call['called']), (kind, call, started)
        latencies[kind] = started - parse_time(call['returned'])
    sent, answered = [dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in (sent, answered)]
    assert first_start(db, 'run-now') >= sent
    latencies['admin run_now'] = first_start(db, 'run-now') - answered
    # A retry due at once (retry_delay 0), from the end of the failed attempt.
    run_now_runs = {attempt: run_id for attempt, _, _, run_id in probes(db, 'run-now')}
    latencies['retry of a cron task'] = (first_start(db, 'run-now', attempt=2)
                                         - finished_at(db, run_now_runs[1]))
    latencies['retry of a job'] = (first_start(db, 'job-retry', attempt=2)
                                   - finished_at(db, calls['job_retry']['job']))
    last_started = parse_time(db.value('SELECT MAX(at) FROM probe_proberun'))
    assert not ticks_handled_between(db, clear_from, last_started), \
        'a tick came while the immediate runs started: the test proves nothing'
    slow = {kind: took.total_seconds() for kind, took in latencies.items() if took > BOUND}
    assert not slow, 'started later than %s after the call: %s' % (BOUND, slow)
    figures('immediate runs on %s at the default heartbeat, call to start (ms): %s' % (
        cluster.stack, ', '.join('%s %.0f' % (kind, took.total_seconds() * 1000)
                                 for kind, took in sorted(latencies.items()))))
    assert 'Handed to a worker now' in admin.get('/admin/sisy/task/')

    # 2. A transaction that rolls back leaves nothing to run.
    before = db.value('SELECT MAX(id) FROM sisy_taskrun')
    control = cluster.scenario('rolled_back_then_control', tag='control')['control']
    wait_until(lambda: probes(db, 'control') and not runs_under_way(db), 10,
               message='the control job enqueued after the rolled-back ones to run')
    rolled_back = '%rolled-back%'
    assert db.value('SELECT COUNT(*) FROM probe_proberun WHERE tag LIKE ?', [rolled_back]) == 0
    # Runs of the probe's functions since (a tick may claim the demo's own tasks meanwhile).
    assert db.rows('SELECT id FROM sisy_taskrun WHERE id > ? AND task_label LIKE ?',
                   [before, 'tests.integration.probe.%']) == [(control,)]
    assert db.value('SELECT COUNT(*) FROM sisy_task WHERE _extra_data LIKE ?', [rolled_back]) == 0

    # 3. Jobs and run_once committed together, with ticks of both heartbeats at the commit.
    count = 20
    commit = cluster.scenario('commit_with_ticks', count=count, ticks=2)
    tags = ['commit-job-%d' % n for n in range(count)] + ['commit-once-%d' % n
                                                         for n in range(count)]
    committing = parse_time(commit['committing'])

    def all_ran():
        ran = {tag for tag, in db.rows('SELECT tag FROM probe_proberun WHERE tag LIKE ?',
                                       ['commit-%'])}
        workers_ticked = [worker for worker, at in ticks_handled_between(
            db, committing, dt.datetime.now(dt.timezone.utc)) if worker != commit['ticked_by']]
        return ran == set(tags) and workers_ticked and not runs_under_way(db)

    wait_until(all_ran, 20, message='the committed runs, and a worker to handle a tick')
    twice = db.rows('SELECT tag, COUNT(*) FROM probe_proberun WHERE tag LIKE ? GROUP BY tag '
                    'HAVING COUNT(*) > 1', ['commit-%'])
    assert not twice, 'ran more than once: %s' % twice
    assert db.value("SELECT COUNT(*) FROM sisy_taskrun WHERE arguments LIKE ? AND NOT "
                    "(status = 'ok' AND attempt = 1)", ['%commit-job-%']) == 0
    cluster.check_health()


def test_a_queue_s_jobs_run_only_on_the_worker_serving_it(cluster):
    """With SISY_QUEUES ['default', 'emails'] and a worker started with
    --only-channels=sisy.run_task.emails, the emails jobs (and a cron task of that
    queue run now) run there, on a doorbell or a tick, and the default ones never do,
    though they wait in the table beside them."""
    cluster.env['SISY_IT_QUEUES'] = 'default,emails'
    start_at_default_heartbeat(cluster, web=False, workers=[('emails-worker', EMAILS_WORKER)])
    [emails] = cluster.named('emails-worker')
    db = cluster.db
    count = 8
    cluster.scenario('enqueue_on_queues', queue='emails', count=count)
    tags = (['emails-%d' % n for n in range(count)] + ['emails-later', 'emails-cron']
            + ['default-%d' % n for n in range(3 * count)] + ['default-cron'])
    wait_until(lambda: {tag for tag, in db.rows('SELECT tag FROM probe_proberun')} >= set(tags)
               and not runs_under_way(db), 20, message='the jobs of both queues')
    sisy_workers = {worker.pid for worker in cluster.named('sisy-worker')}
    for tag in tags:
        [(_, _, pid, job)] = probes(db, tag)
        host, run_pid, queue = db.rows(
            'SELECT host, pid, queue_name FROM sisy_taskrun WHERE id = ?', [job])[0]
        assert run_pid == pid and host == socket.gethostname()
        if tag.startswith('emails'):
            assert (queue, pid) == ('emails', emails.pid), (tag, queue, pid)
        else:
            assert queue == 'default' and pid in sisy_workers, (tag, queue, pid)
    assert emails.alive(), emails.log()
    cluster.check_health()
