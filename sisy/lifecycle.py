"""A run's life as a state machine: each transition one function and one storage call.

::

              claim                take                  finish
    (slot) ---------> pending ---------> running ------------------> ok | error | timeout
    (call) ---------^
                        ^                 |  |                         | stopped | skipped
                        |    give_back    |  |    lose_expired
                        +-----------------+  +----------------------> lost

    error | timeout | lost --(retries left: _follow_up)--> a new pending run, next attempt

- claim: a tick moves a due task past its slot and writes a pending run; a
  task due at once (run_once) is claimed the same way in its creator's write.
- add_job: a hand-off job (sisy.tasks) is written as a pending run directly.
- take: a worker switches pending runs to running under a lease it renews.
- give_back: a worker returns runs it took but has not started (it is busy).
- finish: the worker records how the run ended; *skipped* means it found the
  task disabled or deleted before calling the function.
- lose_expired: a tick records a run whose lease ran out (its worker died).

Every transition is a conditional write on the state the caller believes the
run is in, so a worker that no longer holds a run cannot overwrite what
another process recorded. What belongs together commits together (a claim
with its ledger entries, a finish with what follows it), so a process dying
halfway leaves a state that the next tick repairs. The statements themselves
are in sisy.storage. A run due at once gets a doorbell when its transaction
commits (sisy.doorbells), so a worker starts it without waiting for a tick.
"""

import collections
import datetime as dt
import json
import logging
import os
import socket

from django.db import connection, transaction
from django.utils import timezone

from sisy import doorbells, ledger, retries, signals, storage
from sisy.errors import first_line, is_outage, storable_text
from sisy.models import Task, TaskRun
from sisy.schedule import InvalidSchedule

log = logging.getLogger('sisy.lifecycle')

HOST = socket.gethostname()


# -- the tick's side ---------------------------------------------------------------

CLAIM_COLUMNS = ('pk', 'label', 'schedule', 'next_run', 'iterations', 'end_running',
                 'allow_overlap', 'priority', 'queue_name')


def claim(tasks, when, ring=False):
    """Move each of `tasks` past the slot it is due for, where nobody else has.

    Returns the new pending runs' ids. One transaction for the batch (or the
    caller's): the conditional UPDATE on next_run decides which of any number
    of dispatchers wins each slot. With `ring`, a doorbell for each new run
    goes out when that transaction commits. `tasks` need the columns in
    CLAIM_COLUMNS.
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
        claims.append(storage.Claim(
            task.pk, task.label, task.next_run, following,
            when if following is None else None,  # its last slot: keep iterations
            following is not None and task.iterations > 1, task.priority, task.queue_name))
    if not claims:
        return []
    with transaction.atomic(savepoint=False):
        made = storage.backend().claim(claims, timezone.now())
        claimed = {task_id for _, task_id in made}
        won = [task for task in tasks if task.pk in claimed]
        ledger.note_claims(won, when, {task_id: run_id for run_id, task_id in made})
        if ring:
            queues = {task.pk: task.queue_name for task in won}
            doorbells.ring_on_commit((run_id, queues[task_id]) for run_id, task_id in made)
    return [run_id for run_id, _ in made]


def add_job(function, label, arguments, options, priority, queue_name, not_before=None,
            now=None, ring=True):
    """Write a hand-off job as a pending run; return it. One INSERT, no commit of its own.

    Due now (no `not_before`, or one that has passed), it gets a doorbell when
    the caller's transaction commits (at once outside one); nothing if that
    rolls back, nor with ring=False (eager mode runs it in the caller's
    process). Later, the first tick at or after `not_before` rings for it.
    """
    now = now or timezone.now()
    run = TaskRun(
        task_label=label, function=function, arguments=json.dumps(arguments),
        options=json.dumps(options, sort_keys=True), priority=priority, queue_name=queue_name,
        scheduled_for=not_before or now, not_before=not_before, created_at=now)
    storage.backend().add_job(run)
    if ring and is_due(not_before, now):
        doorbells.ring_on_commit([(run.pk, queue_name)])
    return run


def is_due(not_before, now):
    """Whether a run that may start at `not_before` (None: at once) may start at `now`."""
    return not_before is None or not_before <= now


def _finish_unrun(task, when):
    """A task whose end passed before its next slot: it has no slot left."""
    if storage.backend().end_unrun(task, when):
        log.info('Task %r ended at %s; it has no slot left', task.label,
                 task.end_running.isoformat())


def lose_expired(now):
    """Mark running runs whose lease has ended as lost; return how many.

    Leases are judged by the clock that wrote them (storage.database_clock()): on PostgreSQL
    the database's, so no host's clock matters; elsewhere `now`, the caller's
    own clock, never a tick's time, as a tick from a host whose clock runs
    ahead must not take live runs away from their workers. `now` also times
    what follows a lost run (its retry's delay). Each run is its own
    transaction; one whose follow-up cannot be written is recorded lost
    without it, so no run stops the tick (see finish).
    """
    lost = 0
    for run in storage.backend().expired(now):
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
        run.status, run.lease_until, run.error, run.finished_at = TaskRun.LOST, None, error, now
        signals.send_run_finished(run.task, run)
    return lost


def _lose(run, now, error, follow_up=True):
    """Record one expired run lost, if it still is running; True if this call recorded it."""
    with transaction.atomic():
        if not storage.backend().lose(run.pk, now, error):
            return False
        if follow_up:
            _follow_up([Ending(run, TaskRun.LOST, error, run.started_at, now)], now)
    return True


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
            pk__in=TaskRun.objects.filter(task_id=task_id, status__in=TaskRun.ACTIVE)
            .values('task_id'))
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


Ending = collections.namedtuple(
    'Ending', 'run status error started_at finished_at userdata return_value')
Ending.__new__.__defaults__ = (None, '')
Ending.__doc__ = """How a run ended, as its worker saw it.

userdata: JSON text or None (unchanged); return_value: a hand-off job's, as JSON text ('' none).
"""


def take(now, lease, limit=1, run_id=None, queue=None, or_next=False):
    """Switch up to `limit` pending runs to running for this worker; return them in order.

    Takes run `run_id` if given (and still pending, due or not: whoever named
    it found it due), else the first due ones in line (highest priority, then
    oldest), of `queue` only if given; with `or_next`, the first in line
    with run `run_id` counted in (one statement where the SQL allows). Each returned run has its task loaded
    (None if the task was deleted, and for hand-off jobs). `now` is this
    worker's time (started_at, not_before); each lease lasts `lease` (a
    timedelta) by the clock that judges it (storage.database_clock()).
    """
    return storage.backend().take(now, lease, HOST, os.getpid(), limit, run_id, queue, or_next)


def renew(run_ids, lease, now=None):
    """Extend the leases of running runs by `lease` from now; return the ids renewed.

    Not renewed: runs lost, or asked to stop. The lease is timed by the clock
    that judges it; where that is the hosts', from `now` (default: this
    worker's present time).
    """
    run_ids = list(run_ids)
    if not run_ids:
        return set()
    return storage.backend().renew(run_ids, lease, now or timezone.now())


def give_back(run_ids):
    """Return runs this worker took but never started to the queue; return the ids given back.

    Lets another worker start them while this one is busy with a slow run.
    """
    if not run_ids:
        return set()
    return storage.backend().give_back(run_ids, HOST, os.getpid())


def finish(endings, now=None):
    """Record how runs this worker holds ended (Endings), and what follows for their tasks.

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
    reason added to its error. Only an outage is raised, for the caller to
    retry; the retry skips the runs already written (their objects say so).
    """
    if not endings:
        return set()
    now = now or timezone.now()
    first = {}
    for ending in endings:  # one ending per run: the first noted wins
        first.setdefault(ending.run.pk, ending)
    # A call retried after an outage skips the runs an earlier try already wrote.
    done_before = {pk for pk, ending in first.items() if ending.run.status != TaskRun.RUNNING}
    endings = [ending._replace(error=storable_text(ending.error or ''))
               for pk, ending in first.items() if pk not in done_before]
    ours = {pk for pk in done_before if getattr(first[pk].run, '_ours', False)}
    try:
        return ours | _record_endings(endings, now)
    except Exception as failure:
        if is_outage(failure):
            raise
        if len(endings) == 1:
            return ours | _record_without_follow_up(endings[0], now, failure)
        log.warning('Recording %d run endings together failed (%s); recording each alone',
                    len(endings), first_line(failure))
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
    finishes = [storage.Finish(ending.run.pk, ending.status, ending.error, ending.started_at,
                               ending.finished_at, _seconds(ending), ending.return_value or '')
                for ending in endings]
    with transaction.atomic():  # a savepoint only inside a caller's transaction
        ours = storage.backend().finish(finishes)
        if follow_up:
            _follow_up([ending for ending in endings if ending.run.pk in ours], now)
    for ending, finish in zip(endings, finishes):
        run = ending.run
        if run.pk in ours:
            run.status, run.error, run.started_at = finish.status, finish.error, finish.started_at
            run.finished_at, run.duration = finish.finished_at, finish.duration
            run.return_value = finish.return_value
            run.lease_until = None
            run._ours = True  # what finish retried after an outage reports again
        else:
            _record_late_finish(run, finish.status, finish.error, finish.finished_at,
                                finish.duration, finish.return_value)
            run.status = finish.status  # written down, or left to whatever holds it now
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
    """Inside a finishing transaction: further attempts, then delete finished tasks or settle them.

    Uses each task as loaded with its run (its retry settings and whether it
    has finished do not change while one of its runs is under way).
    """
    settlements, finished, labels = {}, set(), {}
    store = storage.backend()
    for ending in endings:
        run = ending.run
        task = run.task if run.task_id is not None else None
        if task is None and not run.is_job:
            continue
        attempted = ending.status in TaskRun.ATTEMPTED
        delay = retries.retry_delay(task, run, ending.status)
        if delay is not None:
            attempt = store.add_attempt(run, now + dt.timedelta(seconds=delay) if delay else None)
            if attempt is None:
                log.info('Run %s of %r ended %s; no retry: its task was deleted meanwhile',
                         run.pk, run.task_label, ending.status)
                continue
            log.info('Run %s of %r ended %s; attempt %d follows in %s s (run %s)', run.pk,
                     run.task_label, ending.status, attempt.attempt, delay, attempt.pk)
            if not delay:
                doorbells.ring_on_commit([(attempt.pk, attempt.queue_name)])
            if task is None:
                continue
            finished.discard(task.pk)
        elif task is None:
            continue
        elif attempted and task.finished_at is not None:
            finished.add(task.pk)
            labels[task.pk] = task.label
        earlier = settlements.get(task.pk, storage.Settlement(task.pk, None, None, None))
        settlements[task.pk] = earlier._replace(
            outcome=ending.status if attempted else earlier.outcome,
            last_run=(ending.started_at or now) if attempted else earlier.last_run,
            userdata=ending.userdata if ending.userdata is not None else earlier.userdata)
    gone = store.delete_finished(finished) if finished else set()
    for task_id in sorted(gone):
        log.info('Task %r has finished and was deleted', labels[task_id])
    left = [settlement for task_id, settlement in sorted(settlements.items())
            if task_id not in gone]
    if left:
        store.settle(left)


def delete_finished(task_ids):
    """Delete those of `task_ids` that have no slot left and no active run; return their ids.

    Their runs keep their history, unlinked from the task.
    """
    with transaction.atomic(savepoint=False):
        return storage.backend().delete_finished(task_ids)


def _record_late_finish(run, outcome, error, now, duration, return_value=''):
    """Write down how a run ended after its worker had lost it; touch nothing else.

    A hand-off job's return value is written too: its result reads it from this run.
    """
    current = TaskRun.objects.filter(pk=run.pk).values_list('status', 'error').first()
    if current is None or current[0] in TaskRun.ACTIVE:
        return
    status, earlier = current
    note = ('The function ended (%s) at %s, after this run had been recorded %s; the '
            'task was left to whatever holds it now.' % (outcome, now.isoformat(), status))
    TaskRun.objects.filter(pk=run.pk, status=status).update(
        status=outcome, finished_at=now, duration=duration, return_value=return_value,
        error='\n'.join(part for part in (earlier, note, error) if part))
    log.warning('Run %s of %r finished (%s) after it had been recorded %s', run.pk,
                run.task_label, outcome, status)
