import datetime as dt
import os
import sys

import pytest
from channels import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.message import Message
from django.utils import timezone

from sisy import dispatch, lifecycle, storage
from tests import NO_POSTGRESQL


def take_one(now, lease, run_id=None):
    """Take one pending run as a worker does (that one, or the oldest due); None if none."""
    runs = lifecycle.take(now, lease, 1, run_id)
    return runs[0] if runs else None


def unclaimed_one_off(function, **fields):
    """A one-off task as a tick finds it when its creator's own claim did not happen.

    (run_once claims its slot itself; this is the task it saves first.)
    """
    from sisy.models import task_with_callable
    task = task_with_callable(function, iterations=1, wait_for_schedule=False, **fields)
    task.save()
    return task


def finish_run(run, outcome, error='', now=None):
    """Record how one taken run ended, as its worker does; True if it was still the worker's."""
    ending = lifecycle.Ending(run, outcome, error, run.started_at, now or timezone.now())
    return run.pk in lifecycle.finish([ending])


class Worker:
    """Delivers messages from the in-memory layer to Sisy's routed consumers, in-process."""

    def __init__(self):
        self.layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        self.layer.channel_layer.flush()

    def deliver(self, channels=('sisy.run_task', 'sisy.kill_task'), limit=100000):
        """Consume until the channels are empty; return how many messages were handled."""
        handled = 0
        while handled < limit:
            channel, content = self.layer.channel_layer.receive(list(channels), block=False)
            if channel is None:
                return handled
            message = Message(content, channel, self.layer)
            consumer, kwargs = self.layer.router.match(message)
            consumer(message, **kwargs)
            handled += 1
        raise AssertionError('more than %d messages: a message loop?' % limit)

    def tick(self, when):
        """Process a tick at `when` as the heartbeat consumer would, then run everything."""
        claimed = dispatch.process_tick(when, now=when)
        self.deliver()
        return claimed

    def pending(self, channel):
        return self.layer.channel_layer._channels.get(channel, [])


@pytest.fixture
def worker():
    return Worker()


@pytest.fixture
def soon():
    """A whole minute a little in the future: a safe time for test ticks."""
    return (timezone.now() + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)


@pytest.fixture(params=['statements', 'portable'])
def sql_path(request, monkeypatch):
    """Each way the lifecycle writes: Sisy's own statements, or the ORM other databases get."""
    if request.param == 'portable':
        monkeypatch.setattr(storage, 'backend', storage.PortableStorage)
    return request.param


# Skips CI accepts, because another step of the same CI run covers what they leave
# out; any other skip fails a CI run. The browser test needs Selenium, which only the
# main test environment has (tox's environments run the unit tests without it).
COVERED_ELSEWHERE = ('needs real concurrent transactions', 'Django < 2.1: no view permission',
                     'on the database clock on PostgreSQL only',
                     # Python 3.6 and Django 1.11 (tox): the cases they cannot have
                     'this Python writes ints of any length',
                     'Django 1.11 on SQLite cannot save a row without autocommit')
COVERED_OUTSIDE_TOX = ("could not import 'selenium.webdriver'",)
# Python 3.11 has no PostgreSQL (no psycopg2 < 2.9 imports there); the Python 3.9
# run covers what needs it. On 3.9 and 3.10 such a skip fails CI like any other.
COVERED_ON_PYTHON_39 = (NO_POSTGRESQL,)
unexpected_skips = []


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get('CI') == 'true':
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        accepted = COVERED_ELSEWHERE + (COVERED_OUTSIDE_TOX if 'TOX_ENV_NAME' in os.environ else ())
        accepted += COVERED_ON_PYTHON_39 if sys.version_info >= (3, 11) else ()
        if not any(part in reason for part in accepted):
            unexpected_skips.append('%s: %s' % (report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if unexpected_skips and exitstatus == 0:
        session.exitstatus = 1
        session.config.pluginmanager.get_plugin('terminalreporter').write_line(
            '\nCI fails on these skips:\n  ' + '\n  '.join(unexpected_skips), red=True)
