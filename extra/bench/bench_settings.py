"""Django settings of the processes the benchmarks start (workers, heartbeat, set-up).

A bare site: Sisy and Channels only, no demo tasks. The benchmark sets
SISY_BENCH_STACK (``postgresql-redis`` or ``sqlite-ipc``), SISY_BENCH_DATABASE
(a PostgreSQL database name or an SQLite file) and SISY_BENCH_PREFIX (the
channel layer's prefix), so a run never sees another's rows or messages.
SISY_BENCH_REDIS_PORT, if set, is the Redis port (default 6379).
SISY_BENCH_ASYNC_COMMIT, if set, turns PostgreSQL's synchronous_commit off.
SISY_BENCH_SQL_LOG, if set, times each process's statements (sqltimer.py).
SISY_BENCH_URLCONF, if set, names the URLconf (``bench_urls`` includes sisy.urls).
The database and layer settings are the demo's: CONN_MAX_AGE on PostgreSQL,
WAL and a 30 s busy timeout on SQLite, each layer's default capacity.
"""

import os

from demoapp.sqlite import connect_signal

SECRET_KEY = 'sisy-bench-not-secret'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1']
USE_TZ = True
TIME_ZONE = 'UTC'
INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', 'channels',
                  'sisy.apps.SisyConfig']
ROOT_URLCONF = os.environ.get('SISY_BENCH_URLCONF', 'bench_settings')
urlpatterns = []

STACK = os.environ['SISY_BENCH_STACK']
NAME = os.environ['SISY_BENCH_DATABASE']
PREFIX = os.environ['SISY_BENCH_PREFIX']
REDIS_PORT = int(os.environ.get('SISY_BENCH_REDIS_PORT', 6379))
if STACK == 'sqlite-ipc':
    DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': NAME,
                             'OPTIONS': {'timeout': 30}}}
    CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer',
                                  'ROUTING': 'sisy.routing.channel_routing',
                                  'CONFIG': {'prefix': PREFIX}}}
    connect_signal()  # the demo's WAL + synchronous=NORMAL on each connection
else:
    DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': NAME,
                             'USER': 'postgres', 'HOST': '127.0.0.1', 'PORT': 5432,
                             'CONN_MAX_AGE': 60}}
    if os.environ.get('SISY_BENCH_ASYNC_COMMIT'):
        # An experiment only (handoff.py --async-commit): commits do not wait for the WAL
        # to reach the disk, to tell how much of a burst is spent on that wait.
        DATABASES['default']['OPTIONS'] = {'options': '-c synchronous_commit=off'}
    CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_redis.RedisChannelLayer',
                                  'ROUTING': 'sisy.routing.channel_routing',
                                  'CONFIG': {'hosts': [('127.0.0.1', REDIS_PORT)],
                                             'prefix': PREFIX}}}

if os.environ.get('SISY_BENCH_SQL_LOG'):
    import sqltimer
    sqltimer.install()

SISY_HEARTBEAT_FREQUENCY = float(os.environ.get('SISY_HEARTBEAT_FREQUENCY', 1))
if SISY_HEARTBEAT_FREQUENCY == int(SISY_HEARTBEAT_FREQUENCY):
    SISY_HEARTBEAT_FREQUENCY = int(SISY_HEARTBEAT_FREQUENCY)

# Sisy logs a line per run at INFO, as on a real site; it goes to each process's log file.
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(asctime)s %(levelname)s %(name)s: %(message)s'}},
    'handlers': {'console': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'loggers': {'sisy': {'handlers': ['console'], 'level': 'INFO'}},
}
