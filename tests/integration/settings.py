"""The demo project's settings, pointed at one test's own database and layer prefix.

The fixtures set SISY_DEMO_STACK (which stack), SISY_IT_DATABASE (SQLite file or
PostgreSQL database name) and SISY_IT_PREFIX (channel layer prefix), so that
tests running one after another never see each other's rows or messages.
On the postgresql-redis stack, SISY_IT_PG_PORT and SISY_IT_REDIS_PORT (when set)
point the processes at a test's private PostgreSQL and Redis on 127.0.0.1
instead of the machine's shared ones (5432 and 6379). SISY_IT_HEARTBEAT_FREQUENCY
sets SISY_HEARTBEAT_FREQUENCY (default 1; 'default' leaves it unset, so Sisy's own
default applies). SISY_IT_QUEUES (comma-separated) sets SISY_QUEUES.
"""

import os

from demo.settings import *  # noqa: F401,F403
from demo.settings import CHANNEL_LAYERS, DATABASES, INSTALLED_APPS

INSTALLED_APPS = INSTALLED_APPS + ['tests.integration.probe']
DATABASES['default']['NAME'] = os.environ['SISY_IT_DATABASE']
CHANNEL_LAYERS['default']['CONFIG']['prefix'] = os.environ['SISY_IT_PREFIX']
if DATABASES['default']['ENGINE'] == 'django.db.backends.postgresql':
    DATABASES['default']['PORT'] = int(os.environ.get('SISY_IT_PG_PORT') or 5432)
if 'hosts' in CHANNEL_LAYERS['default']['CONFIG']:
    CHANNEL_LAYERS['default']['CONFIG']['hosts'] = [
        ('127.0.0.1', int(os.environ.get('SISY_IT_REDIS_PORT') or 6379))]
# Layer capacities stay at each backend's default: the burst test is about those.

if os.environ.get('SISY_IT_HEARTBEAT_FREQUENCY') == 'default':
    del SISY_HEARTBEAT_FREQUENCY  # noqa: F821 (the demo's, from the star import)
else:
    SISY_HEARTBEAT_FREQUENCY = float(os.environ.get('SISY_IT_HEARTBEAT_FREQUENCY') or 1)
if os.environ.get('SISY_IT_QUEUES'):
    SISY_QUEUES = os.environ['SISY_IT_QUEUES'].split(',')
DEBUG = False
