"""The demo project's settings, pointed at one test's own database and layer prefix.

The fixtures set SISY_DEMO_STACK (which stack), SISY_IT_DATABASE (SQLite file or
PostgreSQL database name) and SISY_IT_PREFIX (channel layer prefix), so that
tests running one after another never see each other's rows or messages.
"""

import os

from demo.settings import *  # noqa: F401,F403
from demo.settings import CHANNEL_LAYERS, DATABASES, INSTALLED_APPS

INSTALLED_APPS = INSTALLED_APPS + ['tests.integration.probe']
DATABASES['default']['NAME'] = os.environ['SISY_IT_DATABASE']
CHANNEL_LAYERS['default']['CONFIG']['prefix'] = os.environ['SISY_IT_PREFIX']
# Layer capacities stay at each backend's default: the burst test is about those.

SISY_HEARTBEAT_FREQUENCY = 1
DEBUG = False
