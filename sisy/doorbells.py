"""Doorbells: run messages that wake workers to take waiting runs from the table.

A message names one of the oldest due pending runs, but it only wakes a
worker: the worker takes that run or, if it is gone, the next one waiting. So a
lost or duplicate message costs nothing, and runs wait in the table, never in
the channel, which may be full.
"""

from channels import Channel
from django.db.models import Q

from sisy.conf import setting
from sisy.models import TaskRun

# Doorbells rung per tick: each wakes a worker, which then takes waiting runs
# from the table until none is left or DRAIN_SECONDS pass (and rings again).
PER_TICK = 10


def ring(now, count):
    """Send up to `count` run messages naming the oldest due pending runs; return how many.

    A message only wakes a worker: the worker takes that run or, if it is
    gone, the next one waiting, so a lost or duplicate message costs nothing.
    Stops quietly when the channel is full: the workers have messages enough.
    """
    waiting = (TaskRun.objects.filter(Q(not_before__isnull=True) | Q(not_before__lte=now),
                                      status=TaskRun.PENDING)
               .order_by('pk').values_list('pk', flat=True)[:count])
    channel = Channel(setting('SISY_RUN_TASK_CHANNEL'))
    rung = 0
    for run_id in waiting:
        try:
            channel.send({'run_id': run_id}, immediately=True)
        except channel.channel_layer.ChannelFull:
            break
        rung += 1
    return rung
