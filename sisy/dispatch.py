"""What one heartbeat tick does: claim due tasks, recover lost runs, feed the run channel.

Each due task is claimed with a conditional UPDATE on its ``next_run``, so of
any number of workers handling ticks for the same moment exactly one wins a
slot. A claim writes a pending TaskRun; runs are sent to the run_task channel
only while it has room, and the rest wait in the table for the next chance,
so a full channel delays runs but never loses them.
"""

import datetime as dt
import logging

from channels import Channel
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from sisy import history
from sisy.conf import setting
from sisy.heartbeat import next_tick
from sisy.models import Task, TaskRun
from sisy.schedule import InvalidSchedule

log = logging.getLogger('sisy.dispatch')

CLAIM_BATCH = 200
TIMING_COLUMNS = ('pk', 'label', 'schedule', 'next_run', 'iterations', 'end_running',
                  'allow_overlap')


def process_tick(when):
    """Do everything a tick at `when` (aware datetime) asks for; return runs claimed."""
    recover_lost_runs(when)
    claimed = claim_due_tasks(when)
    send_waiting_runs(timezone.now())
    send_finished_to_reaper()
    history.prune_now_and_then()
    return claimed


def run_now(tasks, now):
    """Make the enabled, unfinished ones of `tasks` (a Task queryset) due at `now`.

    The next tick claims them as usual, so a run started this way is still
    exactly-once and counts as an iteration. Returns how many are now due.
    """
    runnable = tasks.filter(enabled=True, next_run__isnull=False)
    runnable.filter(next_run__gt=now).update(next_run=now)
    return runnable.count()


def next_tick_time(now):
    """When the heartbeat's first tick after `now` is due (aware, UTC)."""
    seconds = next_tick(now.timestamp(), float(setting('SISY_HEARTBEAT_FREQUENCY')))
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def claim_due_tasks(when):
    """Claim each task due at `when` for its current slot; return the new runs' ids."""
    due = list(Task.objects.due(when).only(*TIMING_COLUMNS).order_by('next_run', 'pk'))
    if due:
        log.info('Tick %s: %d task(s) due', when.isoformat(), len(due))
    run_ids = []
    for start in range(0, len(due), CLAIM_BATCH):
        with transaction.atomic():
            for task in due[start:start + CLAIM_BATCH]:
                run_id = _claim(task, when)
                if run_id is not None:
                    run_ids.append(run_id)
    return run_ids


def _claim(task, when):
    """Move one task past its slot if nobody else has; return the pending run's id."""
    slot = task.next_run
    ours = Task.objects.filter(pk=task.pk, next_run=slot, enabled=True)
    if task.end_running is not None and when > task.end_running:
        ours.update(next_run=None)
        log.info('Task %r ended at %s without a run due; finishing it', task.label,
                 task.end_running.isoformat())
        return None
    try:
        following = task.run_after(when)
    except InvalidSchedule as error:
        _disable(ours, task, 'Invalid schedule: %s' % error)
        return None
    changes = {'next_run': following, 'running': True}
    if task.iterations > 0:
        changes['iterations'] = F('iterations') - 1
    if not task.allow_overlap:
        ours = ours.filter(running=False)
    if not ours.update(**changes):
        return None  # another dispatcher claimed this slot first
    run = TaskRun.objects.create(task_id=task.pk, task_label=task.label, scheduled_for=slot)
    return run.pk


def _disable(queryset, task, reason):
    log.error('Disabling task %r: %s', task.label, reason)
    queryset.update(enabled=False, disabled_reason=reason)


def send_waiting_runs(now, limit=None):
    """Send pending runs not yet in the channel (or sent long ago) until it is full.

    Returns how many were sent. A message may expire unread in the channel, so
    a run still pending after the layer's expiry is sent again; the run's own
    pending-to-running switch makes the duplicate harmless.
    """
    channel = Channel(setting('SISY_RUN_TASK_CHANNEL'))
    resend_before = now - dt.timedelta(seconds=getattr(channel.channel_layer, 'expiry', 60))
    not_in_channel = Q(queued_at__isnull=True) | Q(queued_at__lt=resend_before)
    waiting = (TaskRun.objects.filter(not_in_channel, status=TaskRun.PENDING)
               .order_by('scheduled_for', 'pk').values_list('pk', flat=True))
    if limit is not None:
        waiting = waiting[:limit]
    sent = 0
    for run_id in list(waiting):
        mine = TaskRun.objects.filter(not_in_channel, pk=run_id, status=TaskRun.PENDING)
        if not mine.update(queued_at=now):
            continue  # another worker is sending it
        try:
            channel.send({'run_id': run_id}, immediately=True)
        except channel.channel_layer.ChannelFull:
            TaskRun.objects.filter(pk=run_id).update(queued_at=None)
            log.info('Channel %s is full; %s run(s) wait for room', channel.name,
                     'the remaining' if limit is None else 'further')
            break
        sent += 1
    return sent


def recover_lost_runs(now):
    """Mark runs whose worker stopped renewing their lease as lost, unblocking their tasks."""
    expired = TaskRun.objects.filter(status=TaskRun.RUNNING, lease_until__lt=now)
    for run in expired.only('pk', 'task_id', 'task_label', 'host', 'pid'):
        if not expired.filter(pk=run.pk).update(status=TaskRun.LOST, lease_until=None,
                                                 error='The worker stopped renewing its lease.'):
            continue
        log.warning('Run %s of %r on %s pid %s was lost (worker stopped)', run.pk,
                    run.task_label, run.host, run.pid)
        if run.task_id is not None:
            release_task(run.task_id, TaskRun.LOST)


def release_task(task_id, outcome):
    """Record a run's outcome on its task and clear `running` if no other run is active."""
    Task.objects.filter(pk=task_id).update(last_outcome=outcome)
    active = TaskRun.objects.filter(task_id=task_id, status__in=TaskRun.ACTIVE).values('task_id')
    Task.objects.filter(pk=task_id).exclude(pk__in=active).update(running=False)


def send_to_reaper(task_id):
    """Ask the reaper to delete a finished task; the next tick retries if the channel is full."""
    channel = Channel(setting('SISY_KILL_TASK_CHANNEL'))
    try:
        channel.send({'task_id': task_id}, immediately=True)
    except channel.channel_layer.ChannelFull:
        log.info('Channel %s is full; task %s will be reaped later', channel.name, task_id)
        return False
    return True


def send_finished_to_reaper():
    """Send one reaper message if finished tasks remain; it sweeps a batch of them."""
    task_id = Task.objects.finished().values_list('pk', flat=True).first()
    if task_id is not None:
        send_to_reaper(task_id)


REAP_BATCH = 500


def reap(task_id):
    """Delete the task if it is finished, and a batch of other finished tasks.

    The batch clears the backlog left when reaper messages met a full channel
    (a burst of run_once tasks), which would otherwise take a tick per message.
    Returns how many tasks were deleted.
    """
    finished = Task.objects.finished()
    backlog = list(finished.exclude(pk=task_id).values_list('pk', flat=True)[:REAP_BATCH])
    _, per_model = finished.filter(pk__in=[task_id] + backlog).delete()
    deleted = per_model.get(Task._meta.label, 0)
    if deleted:
        log.info('Reaped %d finished task(s)', deleted)
    return deleted
