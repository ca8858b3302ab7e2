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
