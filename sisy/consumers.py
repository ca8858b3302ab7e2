"""Channels consumers: thin adapters from messages to dispatch and runner calls."""

import datetime as dt
import logging

from django.utils import timezone

from sisy import dispatch, runner
from sisy.conf import setting

log = logging.getLogger('sisy.consumers')


def heartbeat(message):
    """Handle a tick: claim and send the tasks due at the tick's time."""
    try:
        when = dt.datetime.fromtimestamp(float(message.content['time']), dt.timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError):
        log.warning('Ignoring heartbeat message without a valid "time": %r', message.content)
        return
    age = (timezone.now() - when).total_seconds()
    if age > float(setting('SISY_HEARTBEAT_FREQUENCY')):
        log.warning('Ignoring stale tick from %s (%.1f s old)', when.isoformat(), age)
        return
    dispatch.process_tick(when)


def run_task(message):
    """Handle a run message: execute the run it names."""
    run_id = message.content.get('run_id')
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        log.warning('Ignoring run message without an integer "run_id": %r', message.content)
        return
    runner.execute_run(run_id, message)


def kill_task(message):
    """Handle a reaper message: delete the named task if it has finished."""
    task_id = message.content.get('task_id')
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        log.warning('Ignoring reaper message without an integer "task_id": %r', message.content)
        return
    dispatch.reap(task_id)
