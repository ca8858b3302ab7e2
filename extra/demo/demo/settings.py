"""Settings for the Sisy demo: a small project shaped like one of yours.

One environment variable picks the stack:

- SISY_DEMO_STACK unset or ``sqlite-ipc`` (default): SQLite plus the asgi_ipc
  channel layer; nothing to install or start, all processes on one machine.
- SISY_DEMO_STACK=postgresql-redis: PostgreSQL (database ``sisy_demo`` on
  127.0.0.1:5432, user postgres) plus the asgi_redis layer (127.0.0.1:6379).
- SISY_DEMO_STACK=sqlite-redis: SQLite plus the asgi_redis layer, the Redis stack
  of Python 3.11, where the psycopg2 that Django 2.2 needs does not import.
"""

import os

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = 'sisy-demo-not-secret'  # a demo on localhost; never deploy this
DEBUG = True  # lets runworker serve the admin's static files
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
USE_TZ = True
TIME_ZONE = 'UTC'  # cron schedules are read in this zone

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
    'channels',
    'sisy.apps.SisyConfig',
    'demoapp.apps.DemoAppConfig',
]

STACKS = ('sqlite-ipc', 'postgresql-redis', 'sqlite-redis')
STACK = os.environ.get('SISY_DEMO_STACK') or 'sqlite-ipc'
if STACK not in STACKS:
    raise ImproperlyConfigured('SISY_DEMO_STACK=%r is not one of %s.' % (STACK, ', '.join(STACKS)))

if STACK.startswith('sqlite'):
    DATABASES = {'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': os.path.join(BASE_DIR, 'demo.sqlite3'),
        # Several processes write: wait up to 30 s for a lock instead of failing
        # at once. demoapp.sqlite turns on WAL so readers never block writers.
        'OPTIONS': {'timeout': 30},
    }}
else:
    DATABASES = {'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': 'sisy_demo', 'USER': 'postgres', 'HOST': '127.0.0.1', 'PORT': 5432,
        'CONN_MAX_AGE': 60,
    }}
if STACK.endswith('ipc'):
    CHANNEL_LAYERS = {'default': {
        'BACKEND': 'asgi_ipc.IPCChannelLayer',
        'ROUTING': 'demo.routing.channel_routing',
        'CONFIG': {'prefix': 'sisy-demo'},
    }}
else:
    CHANNEL_LAYERS = {'default': {
        'BACKEND': 'asgi_redis.RedisChannelLayer',
        'ROUTING': 'demo.routing.channel_routing',
        'CONFIG': {'hosts': [('127.0.0.1', 6379)], 'prefix': 'sisy-demo:'},
    }}

# Tick every 5 seconds so the demo's seconds-field schedules show up quickly.
SISY_HEARTBEAT_FREQUENCY = 5

MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
]
ROOT_URLCONF = 'demo.urls'
TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.template.context_processors.request',
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
    ]},
}]
STATIC_URL = '/static/'

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(asctime)s %(levelname)s %(name)s: %(message)s'}},
    'handlers': {'console': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'loggers': {
        'sisy': {'handlers': ['console'], 'level': 'INFO'},
        'demoapp': {'handlers': ['console'], 'level': 'INFO'},
    },
}
