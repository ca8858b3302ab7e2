"""A run's life as a state machine: each transition is one function and one transaction.

pending -> running -> ok | error | timeout | stopped     (take, then finish)
running -> lost        (lose: its worker stopped renewing the lease)
pending -> skipped     (skip: the task was disabled or deleted before it started)

Every transition is a conditional UPDATE on the state the caller believes the
run is in, so a worker that no longer holds a run cannot overwrite what
another process recorded, and a process dying halfway leaves a state that the
next tick repairs. A run that ends in error, timeout or lost may be followed by
a retry: a new pending record for the same slot with the next attempt number.
"""

import collections
import datetime as dt
import logging
import os
import socket

from django.db import connection, transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from sisy import ledger, queries, retries, signals
from sisy.errors import first_line, is_outage, storable_text
from sisy.models import Task, TaskRun
from sisy.schedule import InvalidSchedule

log = logging.getLogger('sisy.lifecycle')

HOST = socket.gethostname()


# -- the tick's side ---------------------------------------------------------------

CLAIM_COLUMNS = ('pk', 'label', 'schedule', 'next_run', 'iterations', 'end_running',
                 'allow_overlap')


def claim(tasks, when):
    """Move each of `tasks` past the slot it is due for, where nobody else has.

    Returns the new pending runs' ids. One transaction for the batch: the
    conditional UPDATE on next_run decides which of any number of dispatchers
    wins each slot. `tasks` need the columns in CLAIM_COLUMNS.
    """
    claims, known = [], {}
    for task in tasks:
        if task.end_running is not None and when > task.end_running:
            _finish_unrun(task, when)
            continue
        try:
            following = task.run_after(when, known)
        except InvalidSchedule as error:
            disable(task.pk, 'Invalid schedule: %s' % error, label=task.label)
            continue
        claims.append((task.pk, task.label, task.next_run, following,
                       when if following is None else None,  # its last slot: keep iterations
                       following is not None and task.iterations > 1))
    if not claims:
        return []
    with transaction.atomic(savepoint=False):
        if queries.fast_sql():
            made = queries.claim_batch(claims, timezone.now())
        else:
            made = [pair for pair in map(_claim_one, claims) if pair is not None]
        claimed = {task_id for _, task_id in made}
        won = [task for task in tasks if task.pk in claimed]
        ledger.note_claims(won, when, {task_id: run_id for run_id, task_id in made})
    return [run_id for run_id, _ in made]


def _claim_one(claim):
    """The portable claim of one task, for backends without the batch statement."""
    task_id, label, slot, following, finished_at, decrement = claim
    ours = Task.objects.filter(pk=task_id, next_run=slot, enabled=True, finished_at=None)
    ours = ours.filter(Q(allow_overlap=True) | Q(running=False))
    changes = {'next_run': following, 'running': True, 'finished_at': finished_at}
    if decrement:
        changes['iterations'] = F('iterations') - 1
    if not ours.update(**changes):
        return None
    return TaskRun.objects.create(task_id=task_id, task_label=label, scheduled_for=slot).pk, task_id


def _finish_unrun(task, when):
    """A task whose end passed before its next slot: it has no slot left."""
    if Task.objects.filter(pk=task.pk, next_run=task.next_run, finished_at=None).update(
            next_run=None, finished_at=when):
        log.info('Task %r ended at %s; it has no slot left', task.label,
                 task.end_running.isoformat())


def lose_expired(now):
    """Mark running runs whose lease has ended as lost; return how many.

    Leases are judged by the clock that wrote them (see _clock): on PostgreSQL
    the database's, so no host's clock matters; elsewhere `now`, the caller's
    own clock, never a tick's time, as a tick from a host whose clock runs
    ahead must not take live runs away from their workers. `now` also times
    what follows a lost run (its retry's delay). Each run is its own
    transaction; one whose follow-up cannot be written is recorded lost
    without it, so no run stops the tick (see finish_batch).
    """
    expired = (TaskRun.objects.filter(status=TaskRun.RUNNING, lease_until__lt=_clock(now))
               .select_related('task'))
    lost = 0
    for run in expired:
        error = 'The worker (%s pid %s) stopped renewing its lease.' % (run.host or '?', run.pid)
        try:
            recorded = _lose(run, now, error)
        except Exception as failure:
            if is_outage(failure):
                raise
            log.error('Could not record what follows lost run %s of %r; recording it alone',
                      run.pk, run.task_label, exc_info=failure)
            error += ('\nSisy could not record what follows this run (%s: %s), so no retry '
                      'was made.' % (type(failure).__name__, first_line(failure)))
            recorded = _lose(run, now, storable_text(error), follow_up=False)
        if not recorded:
            continue
        lost += 1
        log.warning('Run %s of %r on %s pid %s was lost (its worker stopped)', run.pk,
                    run.task_label, run.host, run.pid)
        run.status, run.lease_until, run.error = TaskRun.LOST, None, error
        signals.send_run_finished(run.task, run)
    return lost


def _lose(run, now, error, follow_up=True):
    """Record one expired run lost, if it still is running; True if this call recorded it."""
    with transaction.atomic():
        if not TaskRun.objects.filter(pk=run.pk, status=TaskRun.RUNNING,
                                      lease_until__lt=_clock(now)).update(
                status=TaskRun.LOST, lease_until=None, error=error):
            return False
        if follow_up:
            _follow_up([Ending(run, TaskRun.LOST, error, run.started_at, now)], now)
    return True


def _clock(now):
    """The time leases are written and judged by: the database's where queries.database_clock().

    Elsewhere the processes share one machine's clock (SQLite), so `now`, this
    process's time, does.
    """
    return Now() if queries.database_clock() else now


def _lease_end(now, lease):
    """When a lease of `lease` (a timedelta) taken or renewed now ends, by _clock's clock."""
    if queries.database_clock():
        return ExpressionWrapper(Now() + lease, output_field=DateTimeField())
    return now + lease


def repair_stuck_tasks():
    """Clear `running` on tasks that have no active run (a worker died between writes).

    Each candidate is re-checked under a row lock, so a claim committing at the
    same moment is never undone. Returns how many tasks were repaired.
    """
    # Without task_id IS NOT NULL, one active run of a deleted task makes NOT IN find nothing.
    active = TaskRun.objects.filter(status__in=TaskRun.ACTIVE, task__isnull=False).values('task_id')
    candidates = list(Task.objects.filter(running=True).exclude(pk__in=active)
                      .values_list('pk', flat=True)[:500])
    repaired = 0
    for task_id in candidates:
        idle = Task.objects.filter(pk=task_id, running=True).exclude(
            pk__in=_has_active_run(task_id).values('task_id'))
        if not connection.features.has_select_for_update:
            repaired += idle.update(running=False)  # writers take turns: one statement is safe
            continue
        with transaction.atomic():
            if Task.objects.select_for_update().filter(pk=task_id, running=True).exists():
                repaired += idle.update(running=False)
    if repaired:
        log.warning('Repaired %d task(s) marked running with no run under way', repaired)
    return repaired


# -- the worker's side ---------------------------------------------------------------


Ending = collections.namedtuple('Ending', 'run status error started_at finished_at userdata')
Ending.__new__.__defaults__ = (None,)
Ending.__doc__ = """How a run ended, as its worker saw it: userdata is JSON text, or None if unchanged."""


def take(now, lease, run_id=None):
    """Switch one pending run to running for this worker; return it, or None if none is left.

    See take_batch.
    """
    runs = take_batch(now, lease, 1, run_id)
    return runs[0] if runs else None


def take_batch(now, lease, limit, run_id=None):
    """Switch up to `limit` pending runs to running for this worker; return them, oldest first.

    Takes run `run_id` if given (and still pending, due or not: the tick that
    named it found it due), else the oldest due ones. Each returned run has
    its task loaded (None if the task was deleted). `now` is this worker's
    time (started_at, not_before); each lease lasts `lease` (a timedelta) by
    the clock that judges it (see _clock).
    """
    if queries.fast_sql():
        return queries.take_runs(now, lease, HOST, os.getpid(), limit, run_id)
    until = _lease_end(now, lease)
    waiting = TaskRun.objects.filter(status=TaskRun.PENDING)
    if run_id is not None:
        waiting = waiting.filter(pk=run_id)
    else:
        waiting = waiting.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    taken = []
    for candidate in waiting.order_by('pk').values_list('pk', flat=True)[:limit + 5]:
        if len(taken) < limit and TaskRun.objects.filter(
                pk=candidate, status=TaskRun.PENDING).update(
                status=TaskRun.RUNNING, started_at=now, lease_until=until, host=HOST,
                pid=os.getpid()):
            taken.append(candidate)
    return list(TaskRun.objects.select_related('task').filter(pk__in=taken).order_by('pk'))


def renew(run_ids, lease, now=None):
    """Extend the leases of running runs by `lease` from now; return the ids renewed.

    Not renewed: runs lost, or asked to stop. The lease is timed by the clock
    that judges it (see _clock); where that is the hosts', from `now`
    (default: this worker's present time).
    """
    run_ids = list(run_ids)
    if not run_ids:
        return set()
    now = now or timezone.now()
    if queries.fast_sql():
        return queries.renew_leases(run_ids, lease, now)
    until = _lease_end(now, lease)
    return {run_id for run_id in run_ids
            if TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING,
                                      stop_requested=False).update(lease_until=until)}


def give_back(run_ids):
    """Return runs this worker took but never started to the queue; return the ids given back.

    Lets another worker start them while this one is busy with a slow run.
    """
    if not run_ids:
        return set()
    if queries.fast_sql():
        return queries.release_runs(run_ids, HOST, os.getpid())
    given = set()
    for run_id in run_ids:
        if TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING, host=HOST,
                                  pid=os.getpid()).update(
                status=TaskRun.PENDING, started_at=None, lease_until=None, host='', pid=None):
            given.add(run_id)
    return given


def finish(run, outcome, error='', userdata=None, now=None):
    """Record how one run this worker holds ended; True if it was still ours. See finish_batch."""
    now = now or timezone.now()
    return run.pk in finish_batch([Ending(run, outcome, error, run.started_at, now, userdata)])


def skip(run, reason, now=None):
    """End a run this worker took without calling the function (task disabled or deleted).

    Returns True if the run was still ours (and then `run` holds what was recorded).
    """
    now = now or timezone.now()
    return run.pk in finish_batch([Ending(run, TaskRun.SKIPPED, reason, run.started_at, now)])


def finish_batch(endings, now=None):
    """Record how runs this worker holds ended, and what follows for their tasks.

    One transaction: each run's outcome (only if it is still running, i.e.
    ours), then for each task a retry if one is due, or its deletion if it has
    finished, or else its last outcome, `running` flag and the userdata the
    function left. Returns the ids of the runs that were ours, whose objects
    then hold what was recorded. A run no longer ours gets the truth added to
    its record (a late finish), and its task, which another run may hold by
    now, is left alone.

    If that transaction fails for a reason that would not pass (a value the
    database refuses, a task deleted meanwhile), each run is recorded in a
    transaction of its own, so one run's trouble never costs the others their
    endings; a run whose follow-up still fails is recorded without it, the
    reason added to its error. Only an outage is raised, for the caller to retry.
    """
    if not endings:
        return set()
    now = now or timezone.now()
    first = {}
    for ending in endings:  # one ending per run: the first noted wins
        first.setdefault(ending.run.pk, ending)
    endings = [ending._replace(error=storable_text(ending.error or ''))
               for ending in first.values()]
    try:
        return _record_endings(endings, now)
    except Exception as failure:
        if is_outage(failure):
            raise
        if len(endings) == 1:
            return _record_without_follow_up(endings[0], now, failure)
        log.warning('Recording %d run endings together failed (%s); recording each alone',
                    len(endings), first_line(failure))
    ours = set()
    for ending in endings:
        try:
            ours |= _record_endings([ending], now)
        except Exception as failure:
            if is_outage(failure):
                raise
            ours |= _record_without_follow_up(ending, now, failure)
    return ours


def _record_without_follow_up(ending, now, failure):
    """Record a run's ending alone when what follows it cannot be written; say why in it."""
    log.error('Could not record what follows run %s of %r; recording its ending alone',
              ending.run.pk, ending.run.task_label, exc_info=failure)
    note = ('Sisy could not record what follows this run (%s: %s), so no retry was made '
            'and its task was not updated.' % (type(failure).__name__, first_line(failure)))
    error = '\n'.join(part for part in (ending.error, storable_text(note)) if part)
    return _record_endings([ending._replace(error=error)], now, follow_up=False)


def _record_endings(endings, now, follow_up=True):
    """Write the endings (and, with `follow_up`, what follows them) in one transaction."""
    rows = [(ending.run.pk, ending.status, ending.error, ending.started_at, ending.finished_at,
             _seconds(ending)) for ending in endings]
    with transaction.atomic():  # a savepoint only inside a caller's transaction
        if queries.fast_sql():
            ours = queries.finish_runs(rows)
        else:
            ours = {run_id for run_id, status, error, started, finished, duration in rows
                    if TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING).update(
                        status=status, error=error, started_at=started, finished_at=finished,
                        duration=duration, lease_until=None)}
        if follow_up:
            _follow_up([ending for ending in endings if ending.run.pk in ours], now)
    for ending, (_, status, error, started, finished, duration) in zip(endings, rows):
        if ending.run.pk in ours:
            ending.run.status, ending.run.error, ending.run.started_at = status, error, started
            ending.run.finished_at, ending.run.duration = finished, duration
            ending.run.lease_until = None
        else:
            _record_late_finish(ending.run, status, error, finished, duration)
    return ours


def _seconds(ending):
    if ending.started_at is None or ending.status not in TaskRun.ATTEMPTED:
        return None
    return (ending.finished_at - ending.started_at).total_seconds()


def disable(task_id, reason, label=None):
    """Disable a task, recording why; it never runs again until an operator enables it.

    Sends `sisy.signals.task_disabled` if the task was enabled until now.
    `label` is the task's, for the signal (read from the table if not given).
    """
    reason = storable_text(reason)
    log.error('Disabling task %s: %s', task_id, reason)
    if not Task.objects.filter(pk=task_id, enabled=True).update(enabled=False,
                                                                disabled_reason=reason):
        return
    if label is None and signals.task_disabled.has_listeners(Task):
        label = Task.objects.filter(pk=task_id).values_list('label', flat=True).first()
    signals.task_disabled.send_safely(Task, task_id=task_id, label=label, reason=reason)


def request_stop(run_ids):
    """Ask the workers running these runs to interrupt them; return how many were running.

    The worker notices at its next lease renewal, interrupts the function and
    records the run as stopped.
    """
    return TaskRun.objects.filter(pk__in=list(run_ids), status=TaskRun.RUNNING,
                                  stop_requested=False).update(stop_requested=True)


# -- what follows a run ------------------------------------------------------------------


def _follow_up(endings, now):
    """Inside a finishing transaction: retries, then delete finished tasks or release them.

    Uses each task as loaded with its run (its retry settings and whether it
    has finished do not change while one of its runs is under way).
    """
    releases, finished, labels = {}, set(), {}
    for ending in endings:
        run = ending.run
        task = run.task if run.task_id is not None else None
        if task is None:
            continue
        counts = ending.status in TaskRun.ATTEMPTED
        delay = retries.retry_delay(task, run, ending.status)
        if delay is not None and not Task.objects.filter(pk=task.pk).exists():
            log.info('Run %s of %r ended %s; no retry: its task was deleted meanwhile',
                     run.pk, run.task_label, ending.status)
            continue
        if delay is not None:
            retry = TaskRun.objects.create(
                task_id=task.pk, task_label=run.task_label, scheduled_for=run.scheduled_for,
                attempt=run.attempt + 1,
                not_before=now + dt.timedelta(seconds=delay) if delay else None)
            log.info('Run %s of %r ended %s; attempt %d follows in %s s (run %s)', run.pk,
                     task.label, ending.status, retry.attempt, delay, retry.pk)
            finished.discard(task.pk)
        elif counts and task.finished_at is not None:
            finished.add(task.pk)
            labels[task.pk] = task.label
        earlier = releases.get(task.pk, (None, None, None))
        releases[task.pk] = (
            ending.status if counts else earlier[0],
            (ending.started_at or now) if counts else earlier[1],
            ending.userdata if ending.userdata is not None else earlier[2])
    gone = _delete_finished(finished) if finished else set()
    for task_id in sorted(gone):
        log.info('Task %r has finished and was deleted', labels[task_id])
    left = [(task_id,) + release for task_id, release in sorted(releases.items())
            if task_id not in gone]
    if not left:
        return
    if queries.fast_sql():
        queries.release_tasks(left)
        return
    for task_id, outcome, last_run, userdata in left:
        changes = {'running': Exists(_has_active_run(task_id))}
        if outcome is not None:
            changes.update(last_outcome=outcome, last_run=last_run)
        if userdata is not None:
            changes['_extra_data'] = userdata
        Task.objects.filter(pk=task_id).update(**changes)


def delete_finished(task_ids):
    """Delete those of `task_ids` that have no slot left and no active run; return their ids.

    Their runs keep their history, unlinked from the task.
    """
    with transaction.atomic(savepoint=False):
        return _delete_finished(task_ids)


def _delete_finished(task_ids):
    if queries.fast_sql():
        return queries.delete_finished(task_ids)
    gone = set()
    for task_id in task_ids:
        idle = Task.objects.filter(pk=task_id, finished_at__isnull=False).exclude(
            pk__in=_has_active_run(task_id).values('task_id'))
        if idle.exists():
            TaskRun.objects.filter(task_id=task_id).update(task=None)
            if idle.delete()[0]:
                gone.add(task_id)
    return gone


def _has_active_run(task_id):
    return TaskRun.objects.filter(task_id=task_id, status__in=TaskRun.ACTIVE)


def _record_late_finish(run, outcome, error, now, duration):
    """Write down how a run ended after its worker had lost it; touch nothing else."""
    current = TaskRun.objects.filter(pk=run.pk).values_list('status', 'error').first()
    if current is None or current[0] in TaskRun.ACTIVE:
        return
    status, earlier = current
    note = ('The function ended (%s) at %s, after this run had been recorded %s; the '
            'task was left to whatever holds it now.' % (outcome, now.isoformat(), status))
    TaskRun.objects.filter(pk=run.pk, status=status).update(
        status=outcome, finished_at=now, duration=duration,
        error='\n'.join(part for part in (earlier, note, error) if part))
    log.warning('Run %s of %r finished (%s) after it had been recorded %s', run.pk,
                run.task_label, outcome, status)
