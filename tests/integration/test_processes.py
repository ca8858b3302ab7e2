"""Sisy run for real: sisy_heartbeat, two Sisy workers, a web worker and daphne, on
SQLite + asgi_ipc and on PostgreSQL + Redis, each test on its own database and layer.
"""

import datetime as dt
import signal
import time

import pytest

from tests.integration.cluster import parse_time, wait_until

pytestmark = pytest.mark.integration

RECORD = 'tests.integration.probe.tasks.record'
SECOND = dt.timedelta(seconds=1)


def probe_count(db, tag):
    return db.value('SELECT COUNT(*) FROM probe_proberun WHERE tag = ?', [tag])


def no_runs_under_way(db):
    return db.value("SELECT COUNT(*) FROM sisy_taskrun WHERE status IN ('pending', 'running')") == 0


def tasks_left(db, pks):
    marks = ', '.join('?' * len(pks))
    return db.value('SELECT COUNT(*) FROM sisy_task WHERE id IN (%s)' % marks, list(pks))


def slots_run(db, label):
    """The scheduled times of the task's runs, checking each ran exactly once and well."""
    runs = db.rows('SELECT id, scheduled_for, status FROM sisy_taskrun WHERE task_label = ?',
                   [label])
    calls = db.rows('SELECT run_id FROM probe_proberun WHERE label = ?', [label])
    called = [run_id for run_id, in calls]
    assert len(called) == len(set(called)), 'a run was executed twice: %s' % sorted(called)
    assert sorted(called) == sorted(run_id for run_id, _, _ in runs), \
        'runs and calls differ: %s vs %s' % (sorted(called), runs)
    assert {status for _, _, status in runs} <= {'ok'}, runs
    slots = sorted(parse_time(slot) for _, slot, _ in runs)
    assert len(slots) == len(set(slots)), 'a slot ran twice: %s' % slots
    return slots


def wait_for_ticks(db, control_label, ticks):
    """Wait until the every-second control task has run `ticks` more times."""
    start = probe_count(db, control_label)
    wait_until(lambda: probe_count(db, control_label) >= start + ticks, 10 + 2 * ticks,
               message='%d more ticks' % ticks)


@pytest.mark.parametrize('heartbeats', [1, 2], ids=['one-heartbeat', 'two-heartbeats'])
def test_every_scheduled_slot_runs_exactly_once(cluster, heartbeats):
    cluster.start_site(heartbeats=heartbeats)
    cluster.scenario('make_tasks', specs=[
        {'label': 'every-second', 'schedule': '* * * * * *'},
        {'label': 'every-2s', 'schedule': '* * * * * */2'},
    ])
    wait_until(lambda: probe_count(cluster.db, 'every-2s') >= 5, 30, message='5 runs')
    for heartbeat in cluster.named('heartbeat'):
        assert heartbeat.stop() == 0, heartbeat.log()
    wait_until(lambda: no_runs_under_way(cluster.db), 20, message='runs to finish')

    every_second = slots_run(cluster.db, 'every-second')
    every_2s = slots_run(cluster.db, 'every-2s')
    assert len(every_second) >= 9 and len(every_2s) >= 5
    for slots, period in ((every_second, SECOND), (every_2s, 2 * SECOND)):
        gaps = {later - earlier for earlier, later in zip(slots, slots[1:])}
        assert gaps == {period}, 'slots missed or merged: %s' % slots
        assert all(slot.microsecond == 0 and slot.second % period.seconds == 0 for slot in slots)
    # Both tasks were served up to the same last tick.
    assert every_second[-1] - every_2s[-1] in (dt.timedelta(0), SECOND)
    cluster.check_health()


def test_run_once_and_run_iterations_run_their_count_then_are_deleted(cluster):
    cluster.start_site()
    control = cluster.scenario('make_tasks', specs=[
        {'label': 'control', 'schedule': '* * * * * *'}])
    once = cluster.scenario('run_once', tag='shell-once')['pk']
    three = cluster.scenario('run_iterations', label='three-times', iterations=3,
                             schedule='* * * * * *')['pk']
    db = cluster.db

    def finished():
        return (probe_count(db, 'shell-once') == 1 and probe_count(db, 'three-times') == 3
                and tasks_left(db, [once, three]) == 0)

    wait_until(finished, 30, message='the runs and the reaper')
    wait_for_ticks(db, 'control', 3)
    assert finished(), 'a deleted task ran again'
    assert slots_run(db, 'three-times')
    assert tasks_left(db, [control['control']['pk']]) == 1
    cluster.check_health()


def test_start_end_and_enabled_are_honoured(cluster):
    cluster.start_site()
    made = cluster.scenario('make_tasks', specs=[
        {'label': 'control', 'schedule': '* * * * * *'},
        {'label': 'not-yet', 'schedule': '* * * * * *', 'start_in': 3600},
        {'label': 'starts-later', 'schedule': '* * * * * *', 'start_in': 4},
        {'label': 'ends-soon', 'schedule': '* * * * * *', 'end_in': 3},
        {'label': 'disabled', 'schedule': '* * * * * *', 'enabled': False},
    ])
    db = cluster.db
    wait_until(lambda: probe_count(db, 'starts-later') >= 3
               and tasks_left(db, [made['ends-soon']['pk']]) == 0, 30,
               message='starts-later to run and ends-soon to be reaped')
    wait_for_ticks(db, 'control', 2)
    # Every-second tasks keep running: stop the ticks so the records read below are final.
    for heartbeat in cluster.named('heartbeat'):
        assert heartbeat.stop() == 0, heartbeat.log()
    wait_until(lambda: no_runs_under_way(db), 20, message='runs to finish')
    assert probe_count(db, 'not-yet') == 0
    assert probe_count(db, 'disabled') == 0
    start = parse_time(made['starts-later']['start_running'])
    assert min(slots_run(db, 'starts-later')) >= start
    end = parse_time(made['ends-soon']['end_running'])
    ends_soon = slots_run(db, 'ends-soon')
    assert ends_soon and max(ends_soon) <= end
    assert tasks_left(db, [made['not-yet']['pk'], made['disabled']['pk']]) == 2
    cluster.check_health()


def test_a_burst_of_1000_due_tasks_all_run_once_at_default_capacity(cluster, figures):
    cluster.start_site()
    burst = cluster.scenario('burst', count=1000, lead=4)
    due, saved = parse_time(burst['due']), parse_time(burst['saved'])
    assert saved < due, 'the tasks were not all saved before their tick'
    db = cluster.db

    def burst_runs():
        return db.value('SELECT COUNT(*) FROM probe_proberun WHERE tag LIKE ?', ['burst-%'])

    wait_until(lambda: burst_runs() >= 1000, 240, interval=0.5, message='1,000 runs')
    wait_until(lambda: db.value('SELECT COUNT(*) FROM sisy_task WHERE label = ?', [RECORD]) == 0,
               240, interval=0.5, message='the reaper to delete the finished tasks')
    reaped = time.time()
    rows = db.rows('SELECT tag, run_id, at FROM probe_proberun WHERE tag LIKE ?', ['burst-%'])
    assert sorted(tag for tag, _, _ in rows) == sorted('burst-%d' % n for n in range(1000))
    assert len({run_id for _, run_id, _ in rows}) == 1000
    first = min(parse_time(at) for _, _, at in rows)
    last = max(parse_time(at) for _, _, at in rows)
    assert first >= due
    cluster.check_health()
    figures('burst of 1,000 on %s: first run %.2f s after the tick, last %.2f s after '
            '(%.0f runs/s); all reaped %.1f s after the tick'
            % (cluster.stack, (first - due).total_seconds(), (last - due).total_seconds(),
               1000 / max((last - first).total_seconds(), 0.001),
               reaped - due.timestamp()))


def test_heartbeat_stops_promptly_and_cleanly_on_sigterm(cluster):
    for delay in (0, 1.5):  # as soon as it starts, and while it waits between ticks
        heartbeat = cluster.start_heartbeat('heartbeat-%s' % delay)
        time.sleep(delay)  # where the signal lands, not waiting for a result
        started = time.monotonic()
        heartbeat.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: not heartbeat.alive(), 5, interval=0.02, message='the heartbeat to exit')
        took = time.monotonic() - started
        assert heartbeat.popen.returncode == 0, heartbeat.log()
        assert took < 2, 'took %.2f s to stop' % took
        assert 'stopping' in heartbeat.log()
    cluster.check_health()
