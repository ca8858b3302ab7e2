"""Hand-off jobs (sisy.tasks) the tests enqueue. Each records its calls as Call rows."""

from sisy.tasks import task
from tests.testapp.models import Call


@task
def add(a, b):
    Call.objects.create(label='add', run_id=a + b)
    return a + b


@task(priority=5, retries=1, retry_delay=0)
def fail_once(key):
    """Fails on its first attempt, succeeds on the next."""
    Call.objects.create(label='fail_once:%s' % key)
    if Call.objects.filter(label='fail_once:%s' % key).count() == 1:
        raise ValueError('first attempt of %s fails' % key)
    return 'second time lucky'


@task(retries=2, retry_delay=0)
def always_fails():
    raise KeyError('never works')


@task(takes_context=True)
def with_context(context, note):
    Call.objects.create(label='context:%s' % note, run_id=context.attempt)
    return {'attempt': context.attempt, 'job': context.task_result.id}


@task
def returns_a_set():
    return {1, 2}


@task
def label_call(label):
    Call.objects.create(label=label)
    return label


@task(timeout=0.2)
def too_slow():
    import time
    time.sleep(5)


@task
def echo(*args, **kwargs):
    """Returns what it was called with, as the worker passed it."""
    return {'args': args, 'kwargs': kwargs}


@task(retries=1, retry_delay=300)
def fail_once_then_wait(key):
    """Fails on its first attempt; the retry waits five minutes."""
    Call.objects.create(label='fail_once_then_wait:%s' % key)
    if Call.objects.filter(label='fail_once_then_wait:%s' % key).count() == 1:
        raise ValueError('first attempt of %s fails' % key)
    return 'waited'


@task(takes_context=True, retries=1, retry_delay=0)
def context_fails_once(context, key):
    """Fails on attempt 1; attempt 2 returns what its context tells of the earlier one."""
    if context.attempt == 1:
        raise RuntimeError('attempt 1 of %s fails' % key)
    return {'attempt': context.attempt, 'job': context.task_result.id,
            'status': context.task_result.status,
            'errors': [error.exception_class_path for error in context.task_result.errors]}


@task(retries=2, retry_delay=0)
def sleeps(seconds):
    """Sleeps; tests.testapp.tasks.sleeping tells a test it has started."""
    import time
    from tests.testapp.tasks import sleeping
    sleeping.set()
    time.sleep(seconds)


class DatabaseSaid(Exception):
    """An error whose message has lines of its own, as a database driver's has."""


@task
def fails_with_details():
    raise DatabaseSaid('duplicate key value violates unique constraint "order_pkey"\n'
                       'DETAIL:  Key (id)=(1) already exists.')


@task(takes_context=True)
def describe_context(context):
    """Returns what its context says, as a job's code might log it."""
    return {'attempt': context.attempt, 'has_result': context.task_result is not None,
            'repr': repr(context)}
