"""Settings for Sisy's test suite: SQLite and the in-memory layer unless told otherwise.

SISY_TEST_DATABASE=postgresql runs the same tests on PostgreSQL at 127.0.0.1:5432.
"""

import os

SECRET_KEY = 'sisy-tests'
DEBUG = False
USE_TZ = True
TIME_ZONE = 'Europe/London'

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'channels',
    'sisy.apps.SisyConfig',
    'tests.testapp',
]

if os.environ.get('SISY_TEST_DATABASE') == 'postgresql':
    DATABASES = {'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': os.environ.get('SISY_TEST_PG_NAME', 'sisy'), 'USER': 'postgres', 'HOST': '127.0.0.1', 'PORT': 5432,
    }}
else:
    DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}

CHANNEL_LAYERS = {'default': {
    'BACKEND': 'asgiref.inmemory.ChannelLayer',
    'ROUTING': 'tests.routing.channel_routing',
}}
# The unit tests use the in-memory layer on purpose (everything runs in one process),
# so the warning that it cannot reach other processes would only be noise here.
SILENCED_SYSTEM_CHECKS = ['sisy.W001']

MIDDLEWARE = [
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
]
ROOT_URLCONF = 'tests.urls'
TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
        'django.template.context_processors.request',
    ]},
}]
STATIC_URL = '/static/'
