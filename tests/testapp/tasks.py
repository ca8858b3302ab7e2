"""Task functions the tests schedule. Each records its own calls."""

import threading
import time

from tests.testapp.models import Call


def record(message):
    task = message['task']
    Call.objects.create(label=task.label, run_id=message['message'].content.get('run_id'))


def count_in_userdata(message):
    task = message['task']
    task.userdata['count'] = task.userdata.get('count', 0) + 1


def explode(message):
    raise RuntimeError('boom from a test task')


def store_unserializable(message):
    message['task'].userdata['bad'] = object()


def store_loop(message):
    userdata = message['task'].userdata
    userdata['me'] = userdata


def two_args(message, extra):
    pass


def wrong_name(msg):
    pass


class Plain:
    def method(self, message):
        pass


not_callable = 42


# Set by sleep_long and run_until_released once running: for tests that act on a
# function under way. run_until_released returns once `released` is set.
sleeping, released = threading.Event(), threading.Event()


def sleep_long(message):
    """Sleep for userdata['seconds']; note in userdata that clean-up ran when interrupted."""
    task = message['task']
    sleeping.set()
    try:
        time.sleep(task.userdata.get('seconds', 60))
    finally:
        task.userdata['cleaned_up'] = True


def busy_loop_catching_exceptions(message):
    """Never returns on its own, and swallows every ordinary exception."""
    while True:
        try:
            sum(range(1000))
        except Exception:
            pass


def explode_with_undecodable_text(message):
    """Fail as code reading a non-UTF-8 file name does: the message holds a lone surrogate."""
    import os
    raise ValueError('cannot parse ' + os.fsdecode(b'report-\xff.csv') + ' (\x00)')


def delete_own_task_then_explode(message):
    """An operator deletes the task while its run is under way; then the run fails."""
    message['task'].delete()
    raise RuntimeError('failed after the task was deleted')


def break_own_connection_quietly(message):
    """Lose the database connection and carry on, as code that catches its own errors does."""
    from django.db import DatabaseError, connection
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_terminate_backend(pg_backend_pid())')
    except DatabaseError:
        pass


def run_until_released(message):
    """Run until the test sets `released` (a minute at most)."""
    sleeping.set()
    released.wait(60)
