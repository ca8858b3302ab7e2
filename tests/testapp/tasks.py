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


def run_until_released(message):
    """Run until the test sets `released` (a minute at most)."""
    sleeping.set()
    released.wait(60)
