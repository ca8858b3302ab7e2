"""Channels consumers: thin adapters from messages to dispatch and runner calls.

Each checks its message before acting and survives a database outage with one
warning line: whatever was half done is repaired by a later tick.
"""

import datetime as dt
import functools
import logging
import math

from django.db import Error
from django.utils import timezone

from sisy import dispatch, runner
from sisy.conf import setting
from sisy.errors import first_line

log = logging.getLogger('sisy.consumers')


def survives_database_errors(consumer):
    """Log a database error in `consumer` as one line instead of a traceback.

    Any of Django's database errors: a connection the server closed under it
    raises InterfaceError, which is not a DatabaseError.
    """
    @functools.wraps(consumer)
    def wrapped(message):
        try:
            return consumer(message)
        except Error as error:
            log.warning('%s on %s could not reach the database (%s); a later tick repairs '
                        'what was left undone', consumer.__name__,
                        getattr(getattr(message, 'channel', None), 'name', '?'),
                        first_line(error))
    return wrapped


def tick_time(content, now, period):
    """The tick's time as an aware datetime, or None (with a warning) if it is unusable.

    Unusable: not a finite number of epoch seconds, older than one period (stale),
    or more than one period ahead of this process's clock (a host with a fast
    clock, or a forged message). A tick slightly ahead is used as `now`, so
    nothing is ever claimed before its time by this clock.
    """
    value = content.get('time') if isinstance(content, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        log.warning('Ignoring heartbeat message without a finite "time": %r', content)
        return None
    offset = value - now.timestamp()
    if offset > period:
        log.warning('Ignoring tick %.3f: %.1f s ahead of this worker\'s clock (more than one '
                    'heartbeat period); check the heartbeat host\'s clock', value, offset)
        return None
    if offset < -period:
        log.warning('Ignoring stale tick %.3f (%.1f s old)', value, -offset)
        return None
    return min(dt.datetime.fromtimestamp(value, dt.timezone.utc), now)


@survives_database_errors
def heartbeat(message):
    """Handle a tick: claim and send the tasks due at the tick's time."""
    when = tick_time(message.content, timezone.now(), float(setting('SISY_HEARTBEAT_FREQUENCY')))
    if when is not None:
        dispatch.process_tick(when)


def _int_field(message, key, kind):
    value = message.content.get(key) if isinstance(message.content, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        log.warning('Ignoring %s message without an integer "%s": %r', kind, key,
                    message.content)
        return None
    return value


@survives_database_errors
def run_task(message):
    """Handle a run message: execute the run it names."""
    run_id = _int_field(message, 'run_id', 'run')
    if run_id is not None:
        runner.execute_run(run_id, message)


@survives_database_errors
def kill_task(message):
    """Handle a reaper message: delete the named task if it has finished."""
    task_id = _int_field(message, 'task_id', 'reaper')
    if task_id is not None:
        dispatch.reap(task_id)
