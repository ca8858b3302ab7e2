"""Make SQLite fit for several processes writing at once (web, workers, heartbeat).

WAL lets readers go on while one process writes; with Django's ``timeout``
option a writer waits for the lock instead of failing "database is locked".
"""

from django.db.backends.signals import connection_created


def tune(sender, connection, **kwargs):
    """On each new SQLite connection: WAL journal, and fsync only at checkpoints."""
    if connection.vendor != 'sqlite':
        return
    with connection.cursor() as cursor:
        cursor.execute('PRAGMA journal_mode=WAL')
        cursor.execute('PRAGMA synchronous=NORMAL')


def connect_signal():
    connection_created.connect(tune, dispatch_uid='demoapp.sqlite.tune')
