"""Sisy's test suite: unit tests here, real processes in tests.integration."""

# Why the tests that need PostgreSQL skip on Python 3.11, where Django 2.2's psycopg2
# (< 2.9) does not import; the CI skip guard (tests/conftest.py) accepts it there only.
NO_POSTGRESQL = 'needs PostgreSQL: psycopg2 < 2.9 does not import on Python 3.11'
