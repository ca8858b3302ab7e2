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

import datetime as dt
import logging
import os
import socket

from django.db import connection, transaction
from django.db.models import Exists, F, Q
from django.utils import timezone

from sisy import ledger, queries, signals
from sisy.models import Task, TaskRun
from sisy.schedule import InvalidSchedule

log = logging.getLogger('sisy.lifecycle')

HOST = socket.gethostname()
# A lost run of a task with no slot left (a run_once, the last of run_iterations)
# is attempted again, so the job is not dropped, up to this many attempts in all
# (or 1 + retries, if that is more).
FINAL_RUN_ATTEMPTS = 3


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
        ledger.note_claims(won, when, [task for task in won if ledger.is_late(task, when)])
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
    """Mark running runs whose lease ended before `now` as lost; return how many.

    `now` is the caller's own clock, never a tick's time: a tick from a host
    whose clock runs ahead must not take live runs away from their workers.
    """
    expired = (TaskRun.objects.filter(status=TaskRun.RUNNING, lease_until__lt=now)
               .select_related('task'))
    lost = 0
    for run in expired:
        error = 'The worker (%s pid %s) stopped renewing its lease.' % (run.host or '?', run.pid)
        with transaction.atomic():
            if not TaskRun.objects.filter(pk=run.pk, status=TaskRun.RUNNING,
                                          lease_until__lt=now).update(
                    status=TaskRun.LOST, lease_until=None, error=error):
                continue
            _after_run(run, TaskRun.LOST, now)
        lost += 1
        log.warning('Run %s of %r on %s pid %s was lost (its worker stopped)', run.pk,
                    run.task_label, run.host, run.pid)
        run.status, run.lease_until, run.error = TaskRun.LOST, None, error
        signals.send_run_finished(run.task, run)
    return lost


def repair_stuck_tasks():
    """Clear `running` on tasks that have no active run (a worker died between writes).

    Each candidate is re-checked under a row lock, so a claim committing at the
    same moment is never undone. Returns how many tasks were repaired.
    """
    active = TaskRun.objects.filter(status__in=TaskRun.ACTIVE).values('task_id')
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


def take(now, lease, run_id=None):
    """Switch a pending run to running for this worker; return it, or None if none is left.

    Takes run `run_id` if given (and still pending, due or not: the tick that
    named it found it due), else the oldest due one.
    The returned run has its task loaded (None if the task was deleted).
    """
    until = now + lease
    if queries.fast_sql():
        return queries.take_run(now, until, HOST, os.getpid(), run_id)
    waiting = TaskRun.objects.filter(status=TaskRun.PENDING)
    if run_id is not None:
        waiting = waiting.filter(pk=run_id)
    else:
        waiting = waiting.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    for candidate in waiting.order_by('pk').values_list('pk', flat=True)[:5]:
        if TaskRun.objects.filter(pk=candidate, status=TaskRun.PENDING).update(
                status=TaskRun.RUNNING, started_at=now, lease_until=until, host=HOST,
                pid=os.getpid()):
            return TaskRun.objects.select_related('task').get(pk=candidate)
    return None


def renew(run_id, until):
    """Extend a running run's lease; return False if it is no longer ours or must stop."""
    return bool(TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING,
                                       stop_requested=False).update(lease_until=until))


def finish(run, outcome, error='', userdata=None, now=None):
    """Record how a run this worker holds ended, and what follows for its task.

    One transaction: the run's outcome (only if it is still running, i.e. ours),
    then a retry if one is due, or the task's deletion if it has finished, or
    else its last outcome, `running` flag and the userdata the function left
    (JSON text, or None if unchanged). Returns True if the run was still ours,
    and then `run` holds what was recorded; if not, the truth is added to the
    run's record (a late finish) and the task, which another run may hold by
    now, is left alone.
    """
    now = now or timezone.now()
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    with transaction.atomic():
        if TaskRun.objects.filter(pk=run.pk, status=TaskRun.RUNNING).update(
                status=outcome, finished_at=now, error=error, lease_until=None,
                duration=duration):
            _after_run(run, outcome, now, userdata)
            run.status, run.finished_at, run.error, run.duration, run.lease_until = (
                outcome, now, error, duration, None)
            return True
    _record_late_finish(run, outcome, error, now, duration)
    return False


def skip(run, reason, now=None):
    """End a run this worker took without calling the function (task disabled or deleted).

    Returns True if the run was still ours (and then `run` holds what was recorded).
    """
    now = now or timezone.now()
    with transaction.atomic():
        if not TaskRun.objects.filter(pk=run.pk, status=TaskRun.RUNNING).update(
                status=TaskRun.SKIPPED, finished_at=now, error=reason, lease_until=None):
            return False
        _release(run, None, now)
    run.status, run.finished_at, run.error, run.lease_until = TaskRun.SKIPPED, now, reason, None
    return True


def disable(task_id, reason, label=None):
    """Disable a task, recording why; it never runs again until an operator enables it.

    Sends `sisy.signals.task_disabled` if the task was enabled until now.
    `label` is the task's, for the signal (read from the table if not given).
    """
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


def _after_run(run, outcome, now, userdata=None):
    """Inside a finishing transaction: retry if due, then release or delete the task.

    Uses the task as loaded with the run (its retry settings and whether it
    has finished do not change while one of its runs is under way).
    """
    task = run.task if run.task_id is not None else None
    if task is None:
        return
    delay = retry_delay(task, run, outcome)
    if delay is not None:
        retry = TaskRun.objects.create(
            task_id=task.pk, task_label=run.task_label, scheduled_for=run.scheduled_for,
            attempt=run.attempt + 1,
            not_before=now + dt.timedelta(seconds=delay) if delay else None)
        log.info('Run %s of %r ended %s; attempt %d follows in %s s (run %s)', run.pk,
                 task.label, outcome, retry.attempt, delay, retry.pk)
    elif task.finished_at is not None and queries.delete_if_finished(task.pk):
        log.info('Task %r has finished and was deleted', task.label)
        return
    _release(run, outcome, now, userdata)


def retry_delay(task, run, outcome):
    """Seconds until the next attempt of `run`, or None if it gets no further attempt."""
    if outcome not in TaskRun.RETRIED:
        return None
    if run.attempt <= task.retries:
        return task.retry_delay
    if outcome == TaskRun.LOST and task.finished_at is not None \
            and run.attempt < max(FINAL_RUN_ATTEMPTS, task.retries + 1):
        return 0  # the job's only chance: the lease already made it wait
    return None


def _release(run, outcome, now, userdata=None):
    """Record the outcome on the task and clear `running` unless a run is still active."""
    if run.task_id is None:
        return
    changes = {'running': Exists(_has_active_run(run.task_id))}
    if outcome is not None:
        changes.update(last_outcome=outcome, last_run=run.started_at or now)
    if userdata is not None:
        changes['_extra_data'] = userdata
    Task.objects.filter(pk=run.task_id).update(**changes)


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
