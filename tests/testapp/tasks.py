"""Task functions the tests schedule. Each records its own calls."""

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
