"""The consumers' outage guard: a database error is one warning line, never a traceback."""

import logging

import pytest
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from sisy import consumers, dispatch, runner


class FakeMessage:
    def __init__(self, channel, content):
        self.content = content
        self.channel = type('Channel', (), {'name': channel})()


CONSUMERS = {
    'run_task': (runner, 'execute_run', 'sisy.run_task', {'run_id': 7}),
    'heartbeat': (dispatch, 'process_tick', 'sisy.heartbeat', None),
    'kill_task': (dispatch, 'reap', 'sisy.kill_task', {'task_id': 7}),
}


@pytest.mark.parametrize('error', [
    InterfaceError('connection already closed'),  # the server closed it under a batch's flush
    OperationalError('server closed the connection unexpectedly'),
], ids=['InterfaceError', 'OperationalError'])
@pytest.mark.parametrize('name', sorted(CONSUMERS))
def test_a_database_error_in_a_consumer_is_one_warning(name, error, monkeypatch, caplog):
    module, function, channel, content = CONSUMERS[name]

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, function, fails)
    caplog.set_level(logging.INFO, logger='sisy')
    message = FakeMessage(channel, content or {'time': timezone.now().timestamp()})
    assert getattr(consumers, name)(message) is None
    [record] = caplog.records
    assert record.levelname == 'WARNING' and record.name == 'sisy.consumers'
    assert record.getMessage().startswith(
        '%s on %s could not reach the database (%s)' % (name, channel, error))
    assert record.exc_info is None
