"""Sisy's channel routes; include them with include('sisy.routing.channel_routing').

Channel names come from the SISY_*_CHANNEL settings when this module is imported,
with one run channel per queue of SISY_QUEUES (sisy.doorbells.channel_for).
"""

from channels.routing import route

from sisy import consumers
from sisy.conf import setting
from sisy.doorbells import channel_for

channel_routing = [
    route(setting('SISY_HEARTBEAT_CHANNEL'), consumers.heartbeat),
    route(setting('SISY_KILL_TASK_CHANNEL'), consumers.kill_task),
] + [route(channel_for(queue), consumers.run_task) for queue in setting('SISY_QUEUES')]
