"""The worker side: a run's lease is renewed while its function runs."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from sisy.models import TaskRun
from sisy.runner import LeaseKeeper, lease_length

pytestmark = pytest.mark.django_db(transaction=True)


def test_lease_is_three_heartbeats_but_at_least_ten_seconds(settings):
    settings.SISY_HEARTBEAT_FREQUENCY = 60
    assert lease_length() == dt.timedelta(seconds=180)
    settings.SISY_HEARTBEAT_FREQUENCY = 1
    assert lease_length() == dt.timedelta(seconds=10)


def renew_once():
    """Hold a running run's lease with a short lease; return once it has been renewed."""
    start = timezone.now()
    run = TaskRun.objects.create(task_label='long', scheduled_for=start, status='running',
                                 lease_until=start)
    deadline = time.monotonic() + 10
    with LeaseKeeper(run.pk, dt.timedelta(seconds=0.3)):
        while TaskRun.objects.get(pk=run.pk).lease_until <= start:
            assert time.monotonic() < deadline, 'the lease was never renewed'
            time.sleep(0.05)
    return run, start


def test_lease_is_renewed_while_the_function_runs():
    run, start = renew_once()
    renewed = TaskRun.objects.get(pk=run.pk).lease_until
    assert renewed > start
    # After the run ends, renewal stops.
    time.sleep(0.5)
    assert TaskRun.objects.get(pk=run.pk).lease_until == renewed


def test_lease_renewal_goes_on_after_a_database_error(monkeypatch):
    from django.db import OperationalError, close_old_connections
    from sisy import runner

    failures = []

    def flaky_close_old_connections():
        if not failures:
            failures.append(1)
            raise OperationalError('database is locked')
        close_old_connections()

    monkeypatch.setattr(runner, 'close_old_connections', flaky_close_old_connections)
    renew_once()
    assert failures == [1]
