"""Run tasks in your own test suite, without a heartbeat, a worker or a channel layer.

`run_due_tasks` does what a tick and a task worker would do at a given time,
synchronously, in the calling process: it claims the tasks due then with the
real claim, and runs the waiting runs with the worker's own code (records,
retries, timeouts, userdata, signals). It works inside Django's TestCase: no
message is sent, so no running worker is needed.

With the setting SISY_ALWAYS_EAGER, `Task.run_once` and
`Task.run_iterations(..., run_immediately=True)` claim the new task's first slot
and run it the same way before they return, and so does a hand-off job's
`enqueue()` (sisy.tasks) without run_after.
"""

import logging

from channels import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.message import Message
from django.db.models import Q
from django.utils import timezone

from sisy import dispatch, lifecycle, runner
from sisy.conf import setting
from sisy.models import Task, TaskRun

log = logging.getLogger('sisy.testing')


def run_due_tasks(now=None):
    """Claim the tasks due at `now` and run every run waiting then; return those runs.

    `now` is an aware datetime (default: timezone.now()); a time in the future
    is how a test makes a later slot, a `delay_until` or a retry's delay come
    due. The tasks due at `now` are claimed as a tick at `now` would claim them,
    then every pending run due by `now` (claimed now or earlier, retries whose
    delay has passed by `now`) is run here in the order workers take them
    (highest priority, then oldest), including retries that come due during
    the call. Runs are timed by the real clock. Lost-run
    recovery and the reaper are left to real ticks. Returns the runs executed,
    in order, as now stored.
    """
    if now is None:
        now = timezone.now()
    elif timezone.is_naive(now):
        raise ValueError('now must be an aware datetime, e.g. timezone.now() + '
                         'timedelta(days=1); got %r.' % (now,))
    dispatch.claim_due_tasks(now)
    due = (TaskRun.objects.filter(Q(not_before__isnull=True) | Q(not_before__lte=now),
                                  status=TaskRun.PENDING).order_by('-priority', 'pk'))
    doorbell, tried, ran = _doorbell(), [], []
    while True:
        run_id = due.exclude(pk__in=tried).values_list('pk', flat=True).first()
        if run_id is None:
            return _stored(ran)
        tried.append(run_id)  # taken by another process meanwhile: not tried again
        ran += _execute([run_id], doorbell)


def on_task_due_now(sender, task, **ignored):
    """Receiver of signals.task_due_now (connected in apps.ready): SISY_ALWAYS_EAGER's run."""
    if setting('SISY_ALWAYS_EAGER'):
        _run_eagerly(task)


def run_job_eagerly(run):
    """SISY_ALWAYS_EAGER for a hand-off job: execute it in this process, with its retries due now.

    A retry with a retry_delay waits, as a worker's would, for run_due_tasks(now=...).
    """
    doorbell, run_id = _doorbell(), run.pk
    while run_id is not None and _execute([run_id], doorbell):
        run_id = (TaskRun.objects.filter(Q(not_before__isnull=True)
                                         | Q(not_before__lte=timezone.now()),
                                         first_attempt=run.job_id, status=TaskRun.PENDING)
                  .values_list('pk', flat=True).first())


def _run_eagerly(task):
    """Claim `task`'s slot if it is due now and run it in this process; return the run or None.

    What SISY_ALWAYS_EAGER does. Afterwards `task` is reloaded, or, if it has
    finished and was deleted, given the run's outcome as its `last_outcome`.
    """
    now = timezone.now()
    claimable = Task.objects.due(now).filter(pk=task.pk).only(*lifecycle.CLAIM_COLUMNS)
    ran = _stored(_execute(lifecycle.claim(list(claimable), now), _doorbell()))
    if not ran:
        return None
    run = ran[0]
    try:
        task.refresh_from_db()
    except Task.DoesNotExist:
        task.last_outcome, task.last_run, task.next_run = run.status, run.started_at, None
    return run


def _execute(run_ids, doorbell):
    """Take and execute each of `run_ids` with the worker's code; return the ids it ran."""
    ran = []
    with runner.RunBatch(runner.lease_length(), doorbell) as batch:
        for run_id in run_ids:
            if batch.take(run_id):
                runner._execute(batch.next_run(), batch)
                ran.append(run_id)
    return ran


def _stored(run_ids):
    runs = TaskRun.objects.select_related('task').in_bulk(run_ids)
    return [runs[run_id] for run_id in run_ids if run_id in runs]


def _doorbell():
    """A run message like a tick's, for the functions' ``message['message']``.

    On the default channel layer when there is one, else on a private in-memory
    layer; nothing is sent on it.
    """
    try:
        layer = channel_layers[DEFAULT_CHANNEL_LAYER]
    except Exception as error:  # no CHANNEL_LAYERS, or a layer this process cannot build
        from asgiref.inmemory import ChannelLayer
        from channels.asgi import ChannelLayerWrapper
        log.debug('No usable default channel layer (%s); using a private one', error)
        layer = ChannelLayerWrapper(ChannelLayer(), 'sisy.testing', [])
    return Message({'run_id': None}, setting('SISY_RUN_TASK_CHANNEL'), layer)
