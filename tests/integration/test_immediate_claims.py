"""Immediate claims (run_once without delay_until) beside other processes' writes."""

import pytest

pytestmark = pytest.mark.integration


def test_run_once_claims_its_run_while_another_process_commits_a_write(cluster):
    # On SQLite, a claim whose transaction began with a read cannot write once another
    # connection has committed since: "database is locked" at once, whatever the
    # timeout. run_once raised it, though its task was saved and would run later.
    outcome = cluster.scenario('run_once_while_another_process_writes', tag='beside')
    assert outcome == {'error': '', 'runs': 1}
