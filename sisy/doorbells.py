"""Doorbells: run messages that wake workers to take waiting runs from the table.

A message names one of the due pending runs, but it only wakes a worker: the
worker takes the first run in line in the same queue (highest priority, then
oldest), the named run counted in. So a lost or
duplicate message costs nothing, and runs wait in the table, never in the
channel, which may be full.

Each queue has a run channel of its own (`channel_for`), so a worker started
with ``runworker --only-channels=<that channel>`` serves that queue alone.
"""

import logging

from channels import Channel
from django.db import transaction
from django.db.models import Q

from sisy.conf import setting
from sisy.errors import first_line
from sisy.models import TaskRun
from sisy.validation import DEFAULT_QUEUE

log = logging.getLogger('sisy.doorbells')

# Doorbells rung per tick and queue: each wakes a worker, which then takes waiting
# runs from the table until none is left or DRAIN_SECONDS pass (and rings again).
PER_TICK = 10


def channel_for(queue):
    """The run channel of `queue`: SISY_RUN_TASK_CHANNEL for the default, else a suffix of it."""
    base = setting('SISY_RUN_TASK_CHANNEL')
    return base if queue == DEFAULT_QUEUE else '%s.%s' % (base, queue)


def queue_of(channel_name):
    """The queue whose runs a message on `channel_name` is about (None: any queue)."""
    for queue in setting('SISY_QUEUES'):
        if channel_for(queue) == channel_name:
            return queue
    return None


def ring(now, count, queue=None):
    """Send up to `count` run messages per queue for its first due pending runs; return how many.

    Only `queue` if given, else every queue of SISY_QUEUES: one query each.
    Runs of a queue no longer listed are left alone, as no worker serves them
    (sisy_health reports them). Stops quietly when a channel is full: its
    workers have messages enough.
    """
    queues = [queue] if queue is not None else list(setting('SISY_QUEUES'))
    waiting = TaskRun.objects.filter(Q(not_before__isnull=True) | Q(not_before__lte=now),
                                     status=TaskRun.PENDING)
    rung = 0
    for name in queues:
        ids = (waiting.filter(queue_name=name).order_by('-priority', 'pk')
               .values_list('pk', flat=True)[:count])
        rung += _send([(run_id, name) for run_id in ids])
    return rung


def ring_on_commit(runs):
    """Ring for `runs` once the current transaction commits (at once outside one).

    Nothing is rung if it rolls back. A failure to ring is logged, never
    raised into the caller's code: the runs wait in the table for the next
    tick's doorbells. The runs of one transaction share one hook, which stops
    at a full channel: 5,000 jobs enqueued in one transaction cost the layer
    a send per free place in the channel, not two round trips per job. Under
    manual transaction management, the doorbell waits for the caller's commit
    too.
    """
    runs = list(runs)
    if not runs:
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block and connection.run_on_commit:
        # The last hook is joined only if it was registered in the same savepoint:
        # Django drops a savepoint's hooks when it rolls back, and these with them.
        savepoints, hook = connection.run_on_commit[-1][:2]
        if isinstance(hook, _Doorbells) and savepoints == set(connection.savepoint_ids):
            hook.runs.extend(runs)
            return
    if connection.in_atomic_block or connection.get_autocommit():
        transaction.on_commit(_Doorbells(runs))
    elif not connection.features.autocommits_when_autocommit_is_off:
        # Manual transaction management (set_autocommit(False)), where on_commit() is
        # refused: an atomic block there adds nothing to the transaction, and keeps the
        # hook until the caller commits and turns autocommit back on (or rolls back).
        with transaction.atomic(savepoint=False):
            transaction.on_commit(_Doorbells(runs))
    # Else (SQLite on Django 1.11, where not even a save works then) the next tick rings.


class _Doorbells:
    """The on_commit hook ringing for the runs one transaction (or savepoint) made due."""

    def __init__(self, runs):
        self.runs = runs

    def __call__(self):
        _ring_safely(self.runs)


def _ring_safely(runs):
    try:
        _send(runs)
    except Exception as error:  # the layer is away: the next tick rings for them
        log.warning('Could not ring for runs %s (%s); the next tick will',
                    [run_id for run_id, _ in runs], first_line(error))


def _send(runs):
    rung, channels = 0, {}
    for run_id, queue in runs:
        if queue not in channels:
            channels[queue] = Channel(channel_for(queue))
        channel = channels[queue]
        if channel is None:
            continue
        try:
            channel.send({'run_id': run_id}, immediately=True)
        except channel.channel_layer.ChannelFull:
            channels[queue] = None  # its workers have messages enough
            continue
        rung += 1
    return rung
