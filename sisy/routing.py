"""Sisy's channel routes; include them with include('sisy.routing.channel_routing').

Channel names come from the SISY_*_CHANNEL settings when this module is imported.
"""

from channels.routing import route

from sisy import consumers
from sisy.conf import setting

channel_routing = [
    route(setting('SISY_HEARTBEAT_CHANNEL'), consumers.heartbeat),
    route(setting('SISY_RUN_TASK_CHANNEL'), consumers.run_task),
    route(setting('SISY_KILL_TASK_CHANNEL'), consumers.kill_task),
]
