"""Get the demo's database ready: create it (PostgreSQL), migrate, add the admin user."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

ADMIN_USERNAME = ADMIN_PASSWORD = 'admin'


class Command(BaseCommand):
    help = ('Create the demo database if needed (PostgreSQL), apply migrations and make '
            'sure the demo admin user (admin / admin) exists. Safe to run again.')

    def handle(self, *args, **options):
        database = settings.DATABASES['default']
        if database['ENGINE'].endswith('postgresql'):
            create_postgresql_database(database)
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
    import psycopg2
    from psycopg2 import sql
    connection = psycopg2.connect(dbname='postgres', user=database.get('USER'),
                                  host=database.get('HOST'), port=database.get('PORT'),
                                  password=database.get('PASSWORD') or None)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT 1 FROM pg_database WHERE datname = %s', [database['NAME']])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL('CREATE DATABASE {}').format(
                    sql.Identifier(database['NAME'])))
    finally:
        connection.close()
