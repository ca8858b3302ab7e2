"""Sisy's promises under faults, with real heartbeat and worker processes.

Each scenario injects one fault (a worker killed at a point of a run's life,
a paused worker, a hung function, a bad tick, a service restarted) and checks
what a user relies on: no slot claimed twice, no job lost, no task stuck, the
run record telling what happened, and the processes alive or restarted.
"""

import collections
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.cluster import ROOT, SISY_WORKER, parse_time, wait_until
from tests.integration.test_processes import probe_count

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RECORD = 'tests.integration.probe.tasks.record'
HANG = 'tests.integration.probe.tasks.hang'
HANG_STUBBORNLY = 'tests.integration.probe.tasks.hang_stubbornly'
RECORD_SPAN = 'tests.integration.probe.tasks.record_span'
LIBFAKETIME = (glob.glob('/usr/lib/*/faketime/libfaketime.so.1') or ['libfaketime.so.1'])[0]
LEASE = 10  # seconds: the lease at a 1 s heartbeat (three periods, at least ten seconds)


def runs_of(db, label):
    """(attempt, status, error) of each run of `label`, in order."""
    return db.rows('SELECT attempt, status, error FROM sisy_taskrun WHERE task_label = ? '
                   'ORDER BY id', [label])


def calls_of(db, label):
    """How many times the probe function of `label` has been called: not just taken."""
    return db.value('SELECT COUNT(*) FROM probe_proberun WHERE label = ?', [label])


def stuck_tasks(db):
    """Tasks marked running with no run waiting or running: what must never last."""
    return db.value("SELECT COUNT(*) FROM sisy_task WHERE running = ? AND id NOT IN "
                    "(SELECT task_id FROM sisy_taskrun WHERE task_id IS NOT NULL AND "
                    "status IN ('pending', 'running'))", [True])


def slots_done(db, label, killed_pid=None):
    """The slots of `label`'s finished runs, checking each ran once, well, and alone.

    Runs still waiting or running are left out: the site keeps working while
    the test reads, so the newest run may not be done yet. A worker the test
    killed (`killed_pid`) may take down the rest of the batch it held with the
    run it died in: those runs read lost, and their function ran once or not at all.
    """
    runs = db.rows("SELECT id, scheduled_for, status, pid FROM sisy_taskrun WHERE task_label = ? "
                   "AND status NOT IN ('pending', 'running')", [label])
    calls = collections.Counter(run_id for run_id, in db.rows(
        'SELECT run_id FROM probe_proberun WHERE label = ?', [label]))
    for run_id, _, status, pid in runs:
        if killed_pid is not None and pid == killed_pid and status == 'lost':
            assert calls[run_id] <= 1, 'run %s was executed twice' % run_id
        else:
            assert (status, calls[run_id]) == ('ok', 1), 'run %s: %s, executed %d time(s)' % (
                run_id, status, calls[run_id])
    slots = sorted(parse_time(slot) for _, slot, _, _ in runs)
    assert len(slots) == len(set(slots)), 'a slot ran twice: %s' % slots
    return slots


def start_worker(cluster, name):
    """Start one more Sisy worker (as a process manager restarts one) and wait for it."""
    process = cluster.start(name, [sys.executable, '-m', 'django'] + SISY_WORKER)
    wait_until(lambda: 'Listening on channels' in process.log() or not process.alive(), 30,
               message='%s to listen' % name)
    assert process.alive(), process.log()
    return process


def dead_workers(cluster):
    return [worker for worker in cluster.named('sisy-worker') if not worker.alive()]


def keep_steady(cluster):
    """An every-2-s task, to show that other tasks keep running through the fault."""
    cluster.scenario('make_tasks', specs=[{'label': 'steady', 'schedule': '* * * * * */2'}])


def assert_steady_went_on(cluster, since_count, killed_pid=None):
    wait_until(lambda: probe_count(cluster.db, 'steady') >= since_count + 3, 30,
               message='the steady task to keep running')
    slots_done(cluster.db, 'steady', killed_pid)  # each slot exactly once, every run ok


# -- workers killed at each point of a run's life --------------------------------------

# What the one-off job's record must read afterwards, and how often its function ran.
KILL_POINTS = {
    'taken': ([(1, 'lost'), (2, 'ok')], 1),      # before the function: run again
    'inside': ([(1, 'lost'), (2, 'ok')], 1),     # the function died with its worker
    'returned': ([(1, 'lost'), (2, 'ok')], 2),   # done, unrecorded: at-least-once
    'recorded': ([(1, 'ok')], 1),                # recorded: nothing more to do
}


@pytest.mark.parametrize('point', sorted(KILL_POINTS))
def test_a_worker_killed_at_each_point_of_a_run_loses_no_job(cluster, point, tmp_path):
    cluster.env.update(SISY_IT_CRASH_AT=point, SISY_IT_CRASH_LABEL='victim',
                       SISY_IT_CRASH_MARK=str(tmp_path / 'crashed'))
    cluster.start_site()
    keep_steady(cluster)
    db = cluster.db
    job = cluster.scenario('run_iterations', label='victim', iterations=1,
                           schedule='* * * * * *')['pk']
    wait_until(lambda: dead_workers(cluster), 30, message='a worker to be killed at %s' % point)
    [dead] = dead_workers(cluster)
    assert dead.popen.returncode == -signal.SIGKILL
    before = probe_count(db, 'steady')
    start_worker(cluster, 'sisy-worker-restarted')
    expected_runs, expected_calls = KILL_POINTS[point]
    wait_until(lambda: db.value('SELECT COUNT(*) FROM sisy_task WHERE id = ?', [job]) == 0,
               LEASE + 30, message='the job to complete and its task to be deleted')
    assert [(attempt, status) for attempt, status, _ in runs_of(db, 'victim')] == expected_runs
    assert probe_count(db, 'victim') == expected_calls
    # Until its runs are recorded, the worker may also hold a 'steady' run taken in the
    # same batch as the victim's; once they are, it holds nothing.
    assert_steady_went_on(cluster, before, None if point == 'recorded' else dead.popen.pid)
    assert stuck_tasks(db) == 0


# -- a paused worker ------------------------------------------------------------------


def test_a_worker_paused_past_its_lease_gives_way_when_it_resumes(cluster):
    cluster.start_site()
    db = cluster.db
    cluster.scenario('make_tasks', specs=[{
        'label': 'paused', 'function': HANG, 'iterations': 1, 'wait_for_schedule': False}])
    wait_until(lambda: db.rows("SELECT pid FROM sisy_taskrun WHERE task_label = 'paused' "
                               "AND status = 'running'"), 20, message='the run to start')
    [(pid,)] = db.rows("SELECT pid FROM sisy_taskrun WHERE task_label = 'paused'")
    [paused] = [worker for worker in cluster.named('sisy-worker') if worker.popen.pid == pid]
    os.kill(pid, signal.SIGSTOP)
    try:
        # The lease runs out: the run is recorded lost and, as the job's only run,
        # attempted again on the other worker.
        wait_until(lambda: [s for _, s, _ in runs_of(db, 'paused')] == ['lost', 'running'],
                   LEASE + 20, message='the run to be lost and attempted again')
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: 'recorded lost' in runs_of(db, 'paused')[0][2], 15,
               message='the resumed worker to record what happened')
    first = runs_of(db, 'paused')[0]
    assert first[1] == 'lost' and 'was the worker paused?' in first[2]
    assert paused.alive(), 'the resumed worker died:\n' + paused.log()[-2000:]
    assert 'Interrupting run' in paused.log()
    # The resumed worker is free again: it runs new work.
    cluster.scenario('make_tasks', specs=[{'label': 'after', 'iterations': 3,
                                           'wait_for_schedule': False}])
    wait_until(lambda: probe_count(db, 'after') == 3, 20, message='new work to run')
    cluster.scenario('stop_runs_of', label='paused')
    wait_until(lambda: db.value("SELECT COUNT(*) FROM sisy_taskrun WHERE status IN "
                                "('pending', 'running')") == 0, 20, message='all runs to end')
    assert stuck_tasks(db) == 0


# -- hung functions ---------------------------------------------------------------------


def start_hung_run(cluster, label, function, **spec):
    """A site with one task worker, which starts a run of `label` that will not end."""
    cluster.start_site(sisy_workers=1)
    cluster.scenario('make_tasks', specs=[
        dict(spec, label=label, function=function, wait_for_schedule=False)])
    return cluster.db


def assert_other_work_runs(cluster):
    keep_steady(cluster)
    wait_until(lambda: probe_count(cluster.db, 'steady') >= 2, 20,
               message='a task worker to run other work')
    assert stuck_tasks(cluster.db) == 0


def test_a_hung_function_past_its_timeout_is_stopped_and_its_worker_freed(cluster):
    db = start_hung_run(cluster, 'hangs', HANG, timeout=2, iterations=1)
    wait_until(lambda: [s for _, s, _ in runs_of(db, 'hangs')] == ['timeout'], 20,
               message='the run to time out')
    [(_, _, error)] = runs_of(db, 'hangs')
    assert 'timeout of 2.0 s' in error
    assert_other_work_runs(cluster)  # on the only worker, still the same process
    [worker] = cluster.named('sisy-worker')
    assert worker.alive()


def test_a_function_that_ignores_its_timeout_ends_its_worker_with_status_75(cluster):
    db = start_hung_run(cluster, 'stubborn', HANG_STUBBORNLY, timeout=1, iterations=1)
    [worker] = cluster.named('sisy-worker')
    wait_until(lambda: not worker.alive(), 30, message='the worker to give up and exit')
    assert worker.popen.returncode == 75, worker.log()[-2000:]
    [(_, status, error)] = runs_of(db, 'stubborn')
    assert status == 'timeout' and 'exited with status 75' in error
    start_worker(cluster, 'sisy-worker-restarted')
    assert_other_work_runs(cluster)


def test_an_operator_stops_a_hung_run_without_a_timeout(cluster):
    db = start_hung_run(cluster, 'forever', HANG, schedule='0 0 1 1 *')
    wait_until(lambda: calls_of(db, 'forever') == 1, 30, message='the function to start')
    assert cluster.scenario('stop_runs_of', label='forever') == {'stopped': 1}
    wait_until(lambda: [s for _, s, _ in runs_of(db, 'forever')] == ['stopped'], 15,
               message='the worker to stop the run')
    assert db.value("SELECT running FROM sisy_task WHERE label = 'forever'") in (0, False)
    [worker] = cluster.named('sisy-worker')
    assert worker.alive()


def test_sigterm_stops_a_worker_with_a_hung_run_within_its_grace_period(cluster):
    cluster.start_site(sisy_workers=2)
    db = cluster.db
    job = cluster.scenario('make_tasks', specs=[
        {'label': 'interrupted', 'function': HANG, 'iterations': 1,
         'wait_for_schedule': False}])['interrupted']['pk']
    wait_until(lambda: calls_of(db, 'interrupted') == 1, 30, message='the function to start')
    [(pid,)] = db.rows("SELECT pid FROM sisy_taskrun WHERE task_label = 'interrupted'")
    [worker] = [w for w in cluster.named('sisy-worker') if w.popen.pid == pid]
    started = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: not worker.alive(), 15, message='the worker to stop')
    took = time.monotonic() - started
    assert took < 5 + 3, 'took %.1f s to stop' % took
    assert worker.popen.returncode == 0, worker.log()[-2000:]
    # The interrupted one-off job is recorded and attempted again by the other worker.
    wait_until(lambda: [s for _, s, _ in runs_of(db, 'interrupted')] == ['lost', 'running'], 20,
               message='a second attempt under way')
    assert 'shut down' in runs_of(db, 'interrupted')[0][2]
    cluster.scenario('stop_runs_of', label='interrupted')
    wait_until(lambda: db.value('SELECT COUNT(*) FROM sisy_task WHERE id = ?', [job]) == 0, 20,
               message='the job to end')


# -- bad ticks and messages ---------------------------------------------------------------


BAD_TICKS = [
    {'time': float('nan')}, {'time': float('inf')}, {'time': 1e300}, {'time': -1.0},
    {'time': 'soon'}, {'time': None}, {}, {'time': [1]}, {'tick': 5},
]
BAD_RUNS = [{'run_id': 'x'}, {'run_id': None}, {}, {'run_id': 1.5}, {'run_id': True},
            {'run_id': 2 ** 62}, {'run_id': -1}]
BAD_REAPS = [{'task_id': 'x'}, {}, {'task_id': [1]}, {'task_id': 2 ** 62}]


def test_ticks_from_the_future_and_malformed_messages_change_nothing(cluster):
    cluster.start_site()
    db = cluster.db
    cluster.scenario('make_tasks', specs=[
        {'label': 'in-half-an-hour', 'schedule': '* * * * *', 'start_in': 1800},
        {'label': 'steady', 'schedule': '* * * * * */2'}])
    next_run = db.value('SELECT next_run FROM sisy_task WHERE label = ?', ['in-half-an-hour'])
    # A tick from a host whose clock is an hour ahead (or a forged one), then junk.
    messages = ([['sisy.heartbeat', tick] for tick in [{'time': time.time() + 3600}] + BAD_TICKS]
                + [['sisy.run_task', run] for run in BAD_RUNS]
                + [['sisy.kill_task', reap] for reap in BAD_REAPS])
    cluster.scenario('send', messages=messages)
    assert_steady_went_on(cluster, probe_count(db, 'steady'))
    assert probe_count(db, 'in-half-an-hour') == 0, 'a task ran half an hour early'
    assert db.value('SELECT next_run FROM sisy_task WHERE label = ?', ['in-half-an-hour']) \
        == next_run, 'a tick from the future moved the schedule'
    logs = ''.join(worker.log() for worker in cluster.named('sisy-worker'))
    assert 'ahead of this worker' in logs and 'without a finite "time"' in logs
    assert 'without an integer "run_id"' in logs and 'without an integer "task_id"' in logs
    cluster.check_health()


# -- the heartbeat down, and two heartbeats that disagree ------------------------------


def health(cluster):
    """(exit status, what it printed) of `manage.py sisy_health` in the site."""
    result = subprocess.run([sys.executable, '-m', 'django', 'sisy_health'], cwd=ROOT,
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=60)
    return result.returncode, result.stdout


def test_a_heartbeat_down_brings_one_catch_up_run_a_ledger_entry_and_a_health_alarm(cluster):
    down_for = 15  # one long outage: its slots are run once, in one catch-up run
    cluster.start_site()
    db = cluster.db
    keep_steady(cluster)
    wait_until(lambda: probe_count(db, 'steady') >= 2, 20, message='steady runs')
    assert health(cluster)[0] == 0, health(cluster)
    [heartbeat] = cluster.named('heartbeat')
    assert heartbeat.stop() == 0
    down_at = time.time()
    count_when_down = probe_count(db, 'steady')
    status, report = wait_until(lambda: health(cluster)[0] and health(cluster), 20,
                                message='sisy_health to notice')
    assert 'no tick processed for' in report
    time.sleep(max(0, down_for - (time.time() - down_at)))  # the outage under test
    assert probe_count(db, 'steady') <= count_when_down + 1
    cluster.start_heartbeat('heartbeat-again')
    wait_until(lambda: probe_count(db, 'steady') >= count_when_down + 3, 20,
               message='runs after the heartbeat came back')
    slots = slots_done(db, 'steady')
    during = [slot for slot in slots if down_at + 2 < slot.timestamp() < down_at + down_for]
    assert len(during) <= 1, 'missed slots were run one by one: %s' % during
    [(kind, merged, detail)] = db.rows(
        "SELECT kind, slots, detail FROM sisy_slotevent WHERE task_label = 'steady'")
    assert kind == 'no_tick' and merged >= down_for // 2 - 3, (kind, merged, detail)
    assert detail.startswith('no tick between')
    wait_until(lambda: health(cluster)[0] == 0, 20, message='sisy_health to recover')
    cluster.check_health()


def start_with_clock_off(cluster, request, name, offset, argv):
    """Start a process whose wall clock is `offset` off (e.g. '+3s', '-30s'); return it.

    libfaketime shifts the wall clock; the monotonic clock stays real, so waits work.
    """
    process = cluster.start(name, ['env', 'LD_PRELOAD=' + LIBFAKETIME, 'FAKETIME=' + offset,
                                   'DONT_FAKE_MONOTONIC=1'] + argv)
    request.addfinalizer(lambda: [os.unlink(path) for path in glob.glob(
        '/dev/shm/*faketime_*_%d' % process.popen.pid)])  # what the library leaves behind
    return process


def test_two_heartbeats_whose_clocks_are_3s_apart_claim_each_slot_once(cluster, request):
    cluster.start_site(heartbeats=1)
    skewed = start_with_clock_off(cluster, request, 'heartbeat-skewed', '+3s',
                                  [sys.executable, '-m', 'django', 'sisy_heartbeat'])
    wait_until(lambda: 'Heartbeat started' in skewed.log(), 30, message='the skewed heartbeat')
    db = cluster.db
    cluster.scenario('make_tasks', specs=[{'label': 'every-second', 'schedule': '* * * * * *'}])
    wait_until(lambda: probe_count(db, 'every-second') >= 8, 30, message='8 runs')
    slots_done(db, 'every-second')  # each slot once
    early = [(slot, started) for slot, started in db.rows(
        "SELECT scheduled_for, started_at FROM sisy_taskrun WHERE task_label = 'every-second' "
        "AND started_at IS NOT NULL") if parse_time(started) < parse_time(slot)]
    assert not early, 'slots started before their time: %s' % early
    logs = ''.join(worker.log() for worker in cluster.named('sisy-worker'))
    assert 'ahead of this worker' in logs


# -- worker hosts whose clocks are off ----------------------------------------------------


def overlaps(db, label):
    """Pairs of calls of `label` that ran at the same time, by the database's clock."""
    spans = sorted((parse_time(start), parse_time(end), run_id) for start, end, run_id in db.rows(
        'SELECT at, ended, run_id FROM probe_proberun WHERE label = ?', [label]))
    return [(earlier[2], later[2]) for earlier, later in zip(spans, spans[1:])
            if earlier[1] is None or later[0] < earlier[1]]


@pytest.mark.parametrize('cluster', ['postgresql-redis'], indirect=True)
def test_task_workers_whose_clocks_are_30s_off_keep_their_runs_and_never_overlap(
        cluster, request):
    # A 10 s lease; each run lasts longer than a tick period, so a tick judges its lease.
    cluster.env['SISY_IT_HEARTBEAT_FREQUENCY'] = '2'
    task_worker = [sys.executable, '-m', 'django', 'runworker', '--only-channels=sisy.run_task']
    workers = [cluster.start('scheduler-worker', [
        sys.executable, '-m', 'django', 'runworker', '--only-channels=sisy.heartbeat',
        '--only-channels=sisy.kill_task'])]
    workers += [start_with_clock_off(cluster, request, 'sisy-worker-%s' % name, offset,
                                     task_worker) for name, offset in [('slow', '-30s'),
                                                                       ('fast', '+30s')]]
    for worker in workers:
        wait_until(lambda: 'Listening on channels' in worker.log() or not worker.alive(), 30,
                   message='%s to listen' % worker.name)
    cluster.start_heartbeat()
    db = cluster.db
    # One long and one shorter no-overlap task: the worker done first is free to take
    # the long task's next run while the long one still runs, if the tick let it go.
    labels = {'long': 3, 'shorter': 2.5}
    cluster.scenario('make_tasks', specs=[
        {'label': label, 'function': RECORD_SPAN, 'seconds': seconds, 'schedule': '* * * * * *'}
        for label, seconds in labels.items()])
    pids = [worker.popen.pid for worker in workers[1:]]

    def calls_done():
        done = collections.Counter(pid for pid, in db.rows(
            'SELECT pid FROM probe_proberun WHERE ended IS NOT NULL'))
        return min(done[pid] for pid in pids) >= 3

    wait_until(calls_done, 60, message='3 runs done by each skewed worker')
    for label in labels:
        assert not overlaps(db, label), 'runs of %r overlapped: %s' % (label, overlaps(db, label))
    # A run recorded lost whose function then ended reads as it ended, with a note.
    lost = db.rows("SELECT id, task_label, pid, status FROM sisy_taskrun WHERE status = 'lost' "
                   "OR error LIKE '%%recorded lost%%'")
    assert not lost, 'live runs were recorded lost: %s' % lost
    for label in labels:
        slots_done(db, label)  # each slot once, every run ok and called once
    cluster.check_health()
