"""What one heartbeat tick does: claim due tasks, recover lost runs, feed the run channel.

Each due task is claimed with a conditional UPDATE on its ``next_run``, so of
any number of workers handling ticks for the same moment exactly one wins a
slot. A claim writes a pending TaskRun; runs are sent to the run_task channel
only while it has room, and the rest wait in the table for the next chance,
so a full channel delays runs but never loses them.
"""

import datetime as dt
import logging
import os

from channels import Channel
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from sisy import doorbells, history, lifecycle
from sisy.conf import setting
from sisy.errors import first_line
from sisy.heartbeat import next_tick
from sisy.models import Task, TickRecord

log = logging.getLogger('sisy.dispatch')


# The first batch is small so the first runs of a burst start before the rest is claimed.
FIRST_BATCH, CLAIM_BATCH = 50, 500


def process_tick(when, now=None):
    """Do everything a tick at `when` (aware datetime) asks for; return the runs claimed.

    Retry times are judged by `now`, this process's own clock (timezone.now()
    unless given), never by the tick's time; so are leases on SQLite, while
    PostgreSQL judges them by its own clock (see lifecycle.lose_expired).
    """
    now = now or timezone.now()
    lifecycle.lose_expired(now)
    lifecycle.repair_stuck_tasks()
    claimed = claim_due_tasks(when, on_first_batch=lambda: doorbells.ring(now, doorbells.PER_TICK))
    doorbells.ring(now, doorbells.PER_TICK)
    record_tick(when, now, len(claimed))
    send_finished_to_reaper()
    history.prune_now_and_then()
    return claimed


def run_now(tasks, now):
    """Make the enabled, unfinished ones of `tasks` (a Task queryset) due at `now`, and claim them.

    Claimed as a tick claims (so still exactly once, and an iteration), in
    one transaction with the change, and rung for when it commits. One whose
    previous run is still going (and may not overlap) stays due: the first
    tick after that run ends claims it. Returns how many are now due.
    """
    with transaction.atomic():
        runnable = tasks.filter(enabled=True, next_run__isnull=False)
        runnable.filter(next_run__gt=now).update(next_run=now)
        claim_now(runnable.values_list('pk', flat=True), now)
        return runnable.count()


def claim_now(task_ids, now):
    """Claim those of `task_ids` that are due by `now` at once; ring for them on commit.

    What makes run_once and "Run now" immediate: no waiting for a tick. Part
    of the caller's transaction if there is one, so nothing is claimed or
    rung if it rolls back. Returns the new runs' ids.
    """
    # Read before the transaction (when it is ours), so it begins with the claim's write:
    # on SQLite one that began with a read fails at once if another process has
    # committed since. The claim's conditional UPDATE still decides who wins.
    due = list(Task.objects.due(now).filter(pk__in=list(task_ids))
               .only(*lifecycle.CLAIM_COLUMNS).order_by('next_run', 'pk'))
    with transaction.atomic(savepoint=False):
        return lifecycle.claim(due, now, ring=True)


def on_task_due_now(sender, task, **ignored):
    """Receiver of signals.task_due_now (connected in apps.ready): claim it at once.

    With SISY_ALWAYS_EAGER, sisy.testing runs it in this process instead.
    """
    if not setting('SISY_ALWAYS_EAGER'):
        claim_now([task.pk], timezone.now())


def next_tick_time(now):
    """When the heartbeat's first tick after `now` is due (aware, UTC)."""
    seconds = next_tick(now.timestamp(), float(setting('SISY_HEARTBEAT_FREQUENCY')))
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def record_tick(when, now, claimed):
    """Note that this process handled the tick at `when` (one row per worker process)."""
    worker = '%s pid %s' % (lifecycle.HOST, os.getpid())
    values = {'tick': when, 'processed_at': now, 'claimed': claimed}
    if TickRecord.objects.filter(worker=worker).update(**values):
        return
    try:
        with transaction.atomic():
            TickRecord.objects.create(worker=worker, **values)
    except IntegrityError:  # another thread of this process wrote the first row meanwhile
        TickRecord.objects.filter(worker=worker).update(**values)


def claim_due_tasks(when, on_first_batch=None):
    """Claim the tasks due at `when`, a batch at a time; return the new runs' ids.

    On PostgreSQL each batch is read with SKIP LOCKED, so two heartbeats'
    ticks split the work instead of both trying every row. A batch that fails
    (a deadlock, a passing database error) is claimed again task by task, so
    one bad claim is logged and left for the next tick, and the others go on.
    """
    run_ids, size, after = [], FIRST_BATCH, None
    while True:
        due = Task.objects.due(when).only(*lifecycle.CLAIM_COLUMNS).order_by('next_run', 'pk')
        if after is not None:
            due = due.filter(Q(next_run__gt=after[0]) | Q(next_run=after[0], pk__gt=after[1]))
        batch = []
        try:
            if connection.features.has_select_for_update_skip_locked:
                with transaction.atomic():
                    batch = list(due.select_for_update(skip_locked=True)[:size])
                    run_ids += lifecycle.claim(batch, when)
            else:
                # No row locks to take (SQLite): read first, so the claim's transaction
                # begins with its write and waits its turn instead of failing as locked.
                batch = list(due[:size])
                run_ids += lifecycle.claim(batch, when)
        except DatabaseError as error:
            if not batch:
                raise  # not even the due tasks could be read: the database is away
            log.warning('Claiming a batch failed (%s); claiming its tasks one by one',
                        first_line(error))
            run_ids += _claim_one_by_one(batch, when)
        if batch and after is None:
            log.info('Tick %s: claiming due tasks', when.isoformat())
            if on_first_batch:
                on_first_batch()
        if len(batch) < size:
            return run_ids
        after, size = (batch[-1].next_run, batch[-1].pk), CLAIM_BATCH


def _claim_one_by_one(tasks, when):
    run_ids = []
    for task in tasks:
        try:
            run_ids += lifecycle.claim([task], when)
        except DatabaseError as error:
            log.warning('Could not claim task %r for %s (%s); the next tick tries again',
                        task.label, task.next_run.isoformat(), first_line(error))
    return run_ids


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
    task_id = Task.objects.finished().order_by('finished_at').values_list('pk', flat=True).first()
    if task_id is not None:
        send_to_reaper(task_id)


REAP_BATCH = 500


def reap(task_id):
    """Delete the task if it has finished, and a batch of other finished tasks.

    Finished means no slot left and no run waiting or under way (the runs
    decide, not the `running` flag), checked again as each task is deleted.
    The batch clears the backlog left when reaper messages met a full channel
    (a burst of run_once tasks), which would otherwise take a tick per message.
    Returns how many tasks were deleted.
    """
    backlog = list(Task.objects.finished().exclude(pk=task_id)
                   .values_list('pk', flat=True)[:REAP_BATCH])
    deleted = len(lifecycle.delete_finished([task_id] + backlog))
    if deleted:
        log.info('Reaped %d finished task(s)', deleted)
    return deleted
