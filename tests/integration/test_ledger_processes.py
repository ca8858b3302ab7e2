"""The slot ledger with real processes: a busy task worker shows as start delays."""

import sys

import pytest

from tests.integration.cluster import wait_until
from tests.integration.test_processes import probe_count

pytestmark = pytest.mark.integration

SCHEDULER = ['runworker', '--only-channels=sisy.heartbeat', '--only-channels=sisy.kill_task']
TASK_WORKER = ['runworker', '--only-channels=sisy.run_task']


def test_runs_that_wait_for_a_busy_worker_show_their_start_delay(cluster):
    """The deployment the docs advise: ticks are claimed on time by a reserved
    scheduler worker, so a busy task worker shows as late starts, not lost slots."""
    for name, argv in (('scheduler', SCHEDULER), ('sisy-worker-1', TASK_WORKER)):
        worker = cluster.start(name, [sys.executable, '-m', 'django'] + argv)
        wait_until(lambda: 'Listening on channels' in worker.log(), 30, message=name)
    cluster.start_heartbeat()
    db = cluster.db
    cluster.scenario('make_tasks', specs=[
        {'label': 'slow', 'schedule': '* * * * * */10', 'function':
         'tests.integration.probe.tasks.sleep_a_while'},
        {'label': 'every-second', 'schedule': '* * * * * *'}])
    wait_until(lambda: probe_count(db, 'slow') >= 2, 40, message='two slow runs')
    wait_until(lambda: 'waited for a free worker' in cluster.manage(
        'sisy_tasks', 'every-second', '--runs', '20'), 20, message='the ledger to show it')
    report = cluster.manage('sisy_tasks', 'every-second', '--runs', '20')
    assert 'slots that did not start on time:' in report
    # Ticks kept coming; the slots that passed while a run waited were held back by it.
    kinds = {kind for kind, in db.rows(
        "SELECT kind FROM sisy_slotevent WHERE task_label = 'every-second'")}
    assert kinds <= {'held_back'}, kinds
    if kinds:
        assert 'was held back: the previous run' in report
    cluster.check_health()
