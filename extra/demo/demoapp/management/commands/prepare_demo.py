"""Get the demo ready: clear a stopped demo's channel layer, create the database
(PostgreSQL), migrate, add the admin user."""

import contextlib
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

ADMIN_USERNAME = ADMIN_PASSWORD = 'admin'


class Command(BaseCommand):
    help = ("Remove what an earlier demo's asgi_ipc layer left in shared memory, create the "
            "demo database if needed (PostgreSQL), apply migrations and make sure the demo "
            "admin user (admin / admin) exists. Safe to run again.")

    def handle(self, *args, **options):
        call_command('clear_demo_layer', verbosity=options['verbosity'])
        database = settings.DATABASES['default']
        if database['ENGINE'].endswith('postgresql'):
            create_postgresql_database(database)
        call_command('migrate', interactive=False, verbosity=options['verbosity'])
        if not sisy_tables_complete():
            # Sisy is unreleased and its first migration still changes: a demo database
            # made by an earlier checkout lacks tables or columns. It is only a demo.
            self.stdout.write('The demo database predates this checkout of Sisy; '
                              'making it afresh.')
            remake_database(settings.DATABASES['default'])
            call_command('migrate', interactive=False, verbosity=options['verbosity'])
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=ADMIN_USERNAME, defaults={'is_staff': True, 'is_superuser': True})
        if created:
            user.set_password(ADMIN_PASSWORD)
            user.save()
        self.stdout.write('Admin user: %s / %s (%s)' % (
            ADMIN_USERNAME, ADMIN_PASSWORD, 'created' if created else 'already there'))


def create_postgresql_database(database):
    """Create the configured database unless it exists (needs CREATEDB rights)."""
    from psycopg2 import sql
    with postgres_admin(database) as cursor:
        cursor.execute('SELECT 1 FROM pg_database WHERE datname = %s', [database['NAME']])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL('CREATE DATABASE {}').format(
                sql.Identifier(database['NAME'])))


@contextlib.contextmanager
def postgres_admin(database):
    """A cursor on the server's maintenance database, in autocommit."""
    import psycopg2
    connection = psycopg2.connect(dbname='postgres', user=database.get('USER'),
                                  host=database.get('HOST'), port=database.get('PORT'),
                                  password=database.get('PASSWORD') or None)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def sisy_tables_complete():
    """Whether every Sisy table exists with every column the models expect."""
    from django.apps import apps
    from django.db import connection
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for model in apps.get_app_config('sisy').get_models():
            if model._meta.db_table not in tables:
                return False
            columns = {column.name for column in connection.introspection
                       .get_table_description(cursor, model._meta.db_table)}
            if not {field.column for field in model._meta.concrete_fields} <= columns:
                return False
    return True


def remake_database(database):
    """Throw the demo database away and create it empty."""
    from django.db import connection
    connection.close()
    if database['ENGINE'].endswith('sqlite3'):
        for suffix in ('', '-wal', '-shm'):
            if os.path.exists(database['NAME'] + suffix):
                os.remove(database['NAME'] + suffix)
        return
    from psycopg2 import sql
    with postgres_admin(database) as cursor:
        cursor.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
            sql.Identifier(database['NAME'])))
    create_postgresql_database(database)
