"""Execute one claimed run on a worker: call the function, record what happened."""

import datetime as dt
import logging
import os
import socket
import threading
import traceback

from django.db import close_old_connections, connection
from django.utils import timezone

from sisy import dispatch
from sisy.callables import CallableNotFound, load_callable
from sisy.conf import setting
from sisy.models import Task, TaskRun, encode_userdata

log = logging.getLogger('sisy.runner')

HOST = socket.gethostname()


def lease_length():
    """How long a run stays ours without renewal: three heartbeats, at least ten seconds."""
    return dt.timedelta(seconds=max(3 * float(setting('SISY_HEARTBEAT_FREQUENCY')), 10))


def execute_run(run_id, message):
    """Run the pending run `run_id` unless another worker already took it.

    Returns the run's outcome, or None when it was not ours to run.
    """
    started = timezone.now()
    lease = lease_length()
    taken = TaskRun.objects.filter(pk=run_id, status=TaskRun.PENDING).update(
        status=TaskRun.RUNNING, started_at=started, lease_until=started + lease,
        host=HOST, pid=os.getpid())
    if not taken:
        log.debug('Run %s is not pending (duplicate message or already handled)', run_id)
        return None
    run = TaskRun.objects.get(pk=run_id)
    task = Task.objects.filter(pk=run.task_id).first()
    if task is None:
        _finish(run, started, TaskRun.ERROR, 'The task was deleted before the run started.')
        return TaskRun.ERROR
    if not task.enabled:
        _finish(run, started, TaskRun.ERROR, 'The task was disabled before the run started.', task)
        return TaskRun.ERROR
    Task.objects.filter(pk=task.pk).update(last_run=started)
    task.last_run = started
    task._remember_loaded()
    try:
        function = load_callable(task.funcinfo)
    except (CallableNotFound, ValueError) as error:
        reason = 'Cannot load the task function: %s' % error
        log.error('Disabling task %r: %s', task.label, reason)
        Task.objects.filter(pk=task.pk).update(enabled=False, disabled_reason=reason)
        _finish(run, started, TaskRun.ERROR, reason, task)
        return TaskRun.ERROR

    log.info('Running %r (run %s, scheduled for %s)', task.label, run.pk,
             run.scheduled_for.isoformat())
    stored_data = task._extra_data
    outcome, error = TaskRun.OK, ''
    with LeaseKeeper(run.pk, lease):
        try:
            function({'task': task, 'message': message})
        except Exception:
            outcome, error = TaskRun.ERROR, traceback.format_exc()
            log.exception('Task %r (run %s) raised', task.label, run.pk)
    try:
        if task._userdata is not None:
            data = encode_userdata(task._userdata)
            if data != stored_data:
                Task.objects.filter(pk=task.pk).update(_extra_data=data)
    except ValueError as bad_data:
        outcome = TaskRun.ERROR
        error = (error + '\n' if error else '') + 'userdata was not saved: %s' % bad_data
        log.error('Task %r left userdata that cannot be saved: %s', task.label, bad_data)
    _finish(run, started, outcome, error, task)
    return outcome


def _finish(run, started, outcome, error, task=None):
    finished = timezone.now()
    TaskRun.objects.filter(pk=run.pk).update(
        status=outcome, finished_at=finished, error=error, lease_until=None,
        duration=(finished - started).total_seconds())
    if task is None:
        return
    dispatch.release_task(task.pk, outcome)
    if Task.objects.finished().filter(pk=task.pk).exists():
        dispatch.send_to_reaper(task.pk)
    # A run finished, so the channel has room: pass on a run that was waiting.
    dispatch.send_waiting_runs(finished, limit=2)


class LeaseKeeper:
    """Renew a run's lease from a thread while the task function runs.

    If the worker dies, renewals stop and the next tick after the lease ends
    marks the run lost, so a task that forbids overlap is not blocked forever.
    """

    def __init__(self, run_id, lease):
        self.run_id = run_id
        self.lease = lease
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name='sisy-lease-%s' % run_id,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()

    def _renew(self):
        interval = self.lease.total_seconds() / 3
        try:
            while not self.stop.wait(interval):
                try:
                    close_old_connections()
                    TaskRun.objects.filter(pk=self.run_id, status=TaskRun.RUNNING).update(
                        lease_until=timezone.now() + self.lease)
                except Exception:
                    # A passing error (SQLite busy, a dropped connection) must not end
                    # renewals, or a long run is declared lost while it still runs.
                    log.exception('Could not renew the lease of run %s; retrying',
                                  self.run_id)
        finally:
            connection.close()
