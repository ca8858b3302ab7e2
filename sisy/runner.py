"""Execute runs on a worker: take them in batches, call each function under watch, record them.

A worker takes pending runs in batches: one at a time while few are waiting,
up to MAX_BATCH while a backlog lasts, but never more than it expects to
finish in about BATCH_SECONDS (judged by how long its recent runs took). It
calls their functions one after the other, and records their endings in one
commit before it takes the next batch.

One watchdog thread per worker process looks after the runs each executing
thread holds. It renews their leases; records endings that waited more than
FLUSH_AFTER; gives runs not started GIVE_BACK_AFTER after their take back to
the table; and interrupts a function when its timeout passes,
an operator asks to stop it, its lease was taken away (the worker had been
paused), or the worker is told to shut down and the function does not end
within the grace period. A function that ignores the interruption for
GRACE_SECONDS more gets its run recorded by the watchdog, and the worker
process exits with HUNG_EXIT_STATUS so that its process manager starts a
fresh one.
"""

import collections
import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import signal
import threading
import time
import traceback

from channels.message import Message
from django.db import DatabaseError, Error, connection, transaction
from django.utils import timezone

from sisy import doorbells, lifecycle, results, signals
from sisy.callables import CallableNotFound, load_callable, load_job
from sisy.conf import setting
from sisy.errors import first_line, is_outage
from sisy.lifecycle import Ending
from sisy.models import TaskRun, encode_userdata
from sisy.results import TaskContext, TaskResult
from sisy.validation import json_problem

log = logging.getLogger('sisy.runner')

GRACE_SECONDS = 5.0
# How long a worker goes on taking waiting runs from the table before it
# returns to its channels (where ticks and other messages wait).
DRAIN_SECONDS = 1.0
# A batch holds about this many seconds of expected work, and at most MAX_BATCH runs.
BATCH_SECONDS = 0.05
MAX_BATCH = 25
# Seconds after which the watchdog records endings still waiting for their
# batch, and gives runs not started since their take back for other workers.
FLUSH_AFTER = 0.25
GIVE_BACK_AFTER = 1.0
# EX_TEMPFAIL: the worker gave up on a hung function; restart it.
HUNG_EXIT_STATUS = 75
# The signal the watchdog sends the main thread to interrupt a blocking call.
INTERRUPT_SIGNAL = signal.SIGUSR1
WATCH_INTERVAL = 0.2  # seconds between the watchdog's rounds
# Renewing the leases is also when the watchdog learns of an operator's stop.
MAX_RENEWAL_INTERVAL = 5.0
RENEWAL_RETRY = 0.5  # seconds before trying again after a renewal failed


def checkpoint(name, run):
    """A named point of the run's life; does nothing (fault tests replace it)."""


class RunInterrupted(BaseException):
    """Raised inside a task function to make it give way (timeout, stop, shutdown).

    A BaseException, like KeyboardInterrupt, so `except Exception` in the
    function does not swallow it; `finally` blocks still run.
    """

    def __init__(self, outcome=TaskRun.ERROR, reason='interrupted'):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def lease_length():
    """How long a run stays ours without renewal: three heartbeats, at least ten seconds."""
    return dt.timedelta(seconds=max(3 * float(setting('SISY_HEARTBEAT_FREQUENCY')), 10))


def execute_run(run_id, message):
    """Run the pending run `run_id`, then more pending runs, for up to DRAIN_SECONDS.

    The run message is a doorbell: the first run in line in its queue (the one
    whose channel the message came on), `run_id` counted in as whoever rang
    found it due, is taken, so priorities hold among the runs waiting. More runs are taken from that queue only.
    Returns the outcomes of the runs executed, in order (empty when there was
    nothing to run).
    """
    outcomes = []
    stop_at = time.monotonic() + DRAIN_SECONDS
    queue = doorbells.queue_of(getattr(getattr(message, 'channel', None), 'name', None))
    with ShutdownSignals(), RunBatch(lease_length(), message, queue) as batch:
        batch.take(run_id, or_next=True)
        while True:
            run = batch.next_run()
            if run is not None:
                outcomes.append(_execute(run, batch))
                if ShutdownSignals.requested_at is None:
                    continue
            elif time.monotonic() < stop_at:
                if batch.take():
                    continue
                break  # none left waiting
            batch.wind_up()  # time is up, or the worker is stopping
            break
    return outcomes


class ShutdownSignals:
    """Notes SIGTERM/SIGINT while this worker executes runs, then tells Channels' handler.

    Channels' worker would otherwise wait for a hung function for ever; the
    watchdog reads `requested_at` and interrupts the function after
    GRACE_SECONDS. Signal handlers can only be set in the main thread.
    """

    requested_at = None

    def __init__(self):
        self.saved = {}

    def __enter__(self):
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            ShutdownSignals.requested_at = None
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.saved[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame):
        # Only note it: taking locks or writing here could deadlock the interrupted code.
        if ShutdownSignals.requested_at is None:
            ShutdownSignals.requested_at, self.signum = time.monotonic(), signum

    def __exit__(self, *exc_info):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        previous = self.saved.get(self.signum)
        if callable(previous):
            previous(self.signum, None)


def _execute(run, batch):
    """Execute one run this worker has taken; note its ending in `batch`; return its outcome."""
    checkpoint('taken', run)
    if run.is_job:
        return _execute_job(run, batch)
    task = run.task
    if task is None or not task.enabled:
        batch.record(Ending(run, TaskRun.SKIPPED, 'The task was %s before the run started.'
                            % ('deleted' if task is None else 'disabled'),
                            run.started_at, timezone.now()))
        return TaskRun.SKIPPED
    if run.stop_requested:  # asked while a worker that then gave the run back held it
        batch.record(_stopped_before_start(run))
        return TaskRun.STOPPED
    started_at = timezone.now()
    try:
        function = load_callable(task.funcinfo)
    except CallableNotFound:  # running it again could only fail the same way
        reason = 'Cannot load the task function:\n%s' % traceback.format_exc()
        lifecycle.disable(task.pk, reason, label=task.label)
        batch.record(Ending(run, TaskRun.ERROR, reason, started_at, timezone.now()))
        return TaskRun.ERROR
    except Exception as failure:  # a lock timeout or a failover fetching the instance: it may pass
        log.error('Task %r (run %s): loading its function failed: %s', task.label, run.pk,
                  first_line(failure))
        error = 'Cannot load the task function:\n%s' % traceback.format_exc()
        batch.record(Ending(run, TaskRun.ERROR, error, started_at, timezone.now()))
        return TaskRun.ERROR

    log.info('Running %r (run %s, attempt %d, scheduled for %s)', task.label, run.pk,
             run.attempt, run.scheduled_for.isoformat())
    stored_data = task._extra_data
    signals.run_started.send_safely(TaskRun, task=task, run=run)
    outcome, error, _ = _call(run, batch, task.timeout, function, {
        'task': task, 'message': _message_for(run, batch.doorbell)})
    userdata = None
    try:
        if task._userdata is not None:
            userdata = encode_userdata(task._userdata)
            userdata = None if userdata == stored_data else userdata
    except ValueError as bad_data:
        outcome = TaskRun.ERROR
        error = (error + '\n' if error else '') + 'userdata was not saved: %s' % bad_data
        log.error('Task %r left userdata that cannot be saved: %s', task.label, bad_data)
    batch.record(Ending(run, outcome, error, started_at, timezone.now(), userdata))
    return outcome


def _execute_job(run, batch):
    """Execute a hand-off job's run: its function with its arguments; note the return value."""
    started_at = timezone.now()
    options = run.job_options
    try:
        target = load_job(run.function)
        function = getattr(target, 'func', target)  # a sisy.tasks.Task holds the function
        arguments = json.loads(run.arguments or '{}')
    except Exception as failure:  # code removed or renamed since it was enqueued
        log.error('Job %r (run %s): loading its function failed: %s', run.function, run.pk,
                  first_line(failure))
        error = 'Cannot load the job function:\n%s' % traceback.format_exc()
        batch.record(Ending(run, TaskRun.ERROR, error, started_at, timezone.now()))
        return TaskRun.ERROR
    args, kwargs = arguments.get('args', []), arguments.get('kwargs', {})
    if options.get('takes_context'):
        context = TaskContext(TaskResult(target if target is not function else None,
                                         results.runs_of(run.job_id)[:-1] + [run]),
                              run.attempt)
        args = [context] + list(args)
    log.info('Running job %r (run %s, attempt %d)', run.function, run.pk, run.attempt)
    signals.run_started.send_safely(TaskRun, task=None, run=run)
    outcome, error, value = _call(run, batch, options.get('timeout'), function, *args, **kwargs)
    returned = ''
    if outcome == TaskRun.OK:
        problem = json_problem(value, 'the return value')
        if problem:
            try:  # recorded as a traceback, so the job's errors name TypeError as its class
                raise TypeError(problem)
            except TypeError:
                outcome, error = TaskRun.ERROR, traceback.format_exc()
            log.error('Job %r (run %s): %s', run.function, run.pk, problem)
        else:
            returned = json.dumps(value)
    batch.record(Ending(run, outcome, error, started_at, timezone.now(), None, returned))
    return outcome


def _call(run, batch, timeout, function, *args, **kwargs):
    """Call a run's function under watch; return (outcome, error, what it returned)."""
    outcome, error, value = TaskRun.OK, '', None
    with batch.watch(run, timeout) as watch:
        try:
            with _own_savepoint(), watch.interruptible():  # never interrupt the savepoint
                value = function(*args, **kwargs)
        except RunInterrupted:
            # In a worker thread the raised instance is a bare one: the watch knows why.
            interruption = watch.interruption
            outcome, error = interruption.outcome, traceback.format_exc()
            log.error('%r (run %s) was interrupted: %s', run.task_label, run.pk,
                      interruption.reason)
        except Exception:
            outcome, error = TaskRun.ERROR, traceback.format_exc()
            log.exception('%r (run %s) raised', run.task_label, run.pk)
    checkpoint('returned', run)
    _drop_broken_connection()
    return outcome, error, value


@contextlib.contextmanager
def _own_savepoint():
    """A savepoint around the function when it runs inside a caller's transaction.

    Only eager mode and run_due_tasks call functions inside one (a TestCase's): a
    statement the database refuses then spoils the savepoint, not the caller's
    transaction, so the run can still be recorded. A worker calls them outside any.
    """
    if not connection.in_atomic_block:
        yield
        return
    sid = transaction.savepoint()
    try:
        yield
    finally:
        _end_savepoint(sid)


def _end_savepoint(sid):
    """Keep what the function wrote, unless a refused statement spoiled it: then undo it all."""
    if not connection.needs_rollback:
        try:
            transaction.savepoint_commit(sid)
            return
        except DatabaseError:  # PostgreSQL: the transaction is aborted since that statement
            pass
    connection.needs_rollback = False
    transaction.savepoint_rollback(sid)


def _drop_broken_connection():
    """Close this thread's connection if the function left it broken (it caught the error).

    Recording the run then opens a fresh one, instead of meeting the dead one
    and waiting as if the database were away.
    """
    if connection.errors_occurred and not connection.in_atomic_block:
        connection.errors_occurred = False
        if connection.connection is not None and not connection.is_usable():
            connection.close()


def _message_for(run, doorbell):
    """The Channels message a task function receives: the one naming its run.

    A run taken straight from the table gets a message like the one the tick
    would have sent for it, on the same channel and layer as the doorbell.
    """
    content = getattr(doorbell, 'content', None)
    if doorbell is None or (isinstance(content, dict) and content.get('run_id') == run.pk):
        return doorbell
    return Message({'run_id': run.pk}, doorbell.channel.name, doorbell.channel_layer)


class RunBatch:
    """The runs one executing thread holds: taken, under way, or ended and not yet recorded.

    Its lock guards the queue and the endings; the watchdog tends it between
    the thread's own steps (see the module doc).
    """

    # Seconds the recent runs of this process took, averaged, for sizing batches.
    pace = None

    def __init__(self, lease, doorbell, queue=None):
        self.lease, self.doorbell, self.queue_name = lease, doorbell, queue
        self.lock = threading.RLock()
        self.queue = collections.deque()  # taken, not started yet
        self.size = 1                     # how many runs the next take asks for, at most
        self.current = None               # the RunWatch of the run under way
        self.endings = []                 # ended, not recorded yet
        self.ended_since = None           # monotonic time of the oldest of them
        self.taken_at = None              # monotonic time of the last take that got runs
        self.unannounced = []             # (endings, ours) the watchdog recorded
        self.in_main_thread = threading.current_thread() is threading.main_thread()
        self.thread_id = threading.get_ident()
        self.saved_handler = None
        self._held(time.monotonic())

    def __enter__(self):
        if self.in_main_thread:
            self.saved_handler = signal.signal(INTERRUPT_SIGNAL, self._on_interrupt_signal)
        Watchdog.tend(self)
        return self

    def __exit__(self, *exc_info):
        try:
            with self.lock:
                self._give_back('this worker stopped taking runs')
        except Error as failure:  # they stay ours until lost-run recovery sees the lease end
            log.warning('Could not give back runs not started: %s', first_line(failure))
        try:
            self._flush_through_outage()
            self._announce()
        finally:
            Watchdog.forget(self)
            if self.in_main_thread:
                signal.signal(INTERRUPT_SIGNAL, self.saved_handler)

    def _held(self, now):
        self.held_until = now + self.lease.total_seconds()
        self.next_renewal = now + min(self.lease.total_seconds() / 3, MAX_RENEWAL_INTERVAL)

    # -- the executing thread's side --------------------------------------------------

    def take(self, run_id=None, or_next=False):
        """Record the endings so far, then take more runs; return how many were taken.

        Takes run `run_id` alone if given, or with `or_next` the first run in line
        of this batch's queue, that run included (for a doorbell; neither
        changes the batch size). Otherwise one run at first, and twice as many
        after each take that came back full (a backlog is waiting), as far as
        the recent pace and MAX_BATCH allow; back to one after a take that came
        back short. The endings get their own commit first, so a worker that
        dies once they are recorded holds no run it never started.
        """
        if run_id is not None or RunBatch.pace is None:
            size = 1
        else:
            in_budget = int(BATCH_SECONDS / max(RunBatch.pace, 1e-6))
            size = max(1, min(self.size, MAX_BATCH, in_budget))
        self.flush()
        self._announce()
        with self.lock:
            runs = lifecycle.take(timezone.now(), self.lease, size, run_id, self.queue_name,
                                  or_next)
            self.queue.extend(runs)
            if runs:
                self.taken_at = time.monotonic()
                self._held(self.taken_at)
        if run_id is None:
            self.size = 2 * size if len(runs) == size else 1
        return len(runs)

    def next_run(self):
        with self.lock:
            return self.queue.popleft() if self.queue else None

    def record(self, ending):
        """Note how a run ended; it is recorded with the next take or flush."""
        with self.lock:
            self.endings.append(ending)
            if self.ended_since is None:
                self.ended_since = time.monotonic()

    def flush(self, announce=True):
        """Record the endings noted so far, in one transaction.

        With announce=False (the watchdog), their signals are left for the
        executing thread to send, so a slow receiver cannot hold up the watchdog.
        """
        with self.lock:
            endings = self.endings
            ours = lifecycle.finish(endings)
            self.endings, self.ended_since = [], None
            if not announce:
                self.unannounced.append((endings, ours))
                return
        _recorded(endings, ours)

    def _announce(self):
        """Send the signals of endings the watchdog recorded (the executing thread's job)."""
        with self.lock:
            pending, self.unannounced = self.unannounced, []
        for endings, ours in pending:
            _recorded(endings, ours)

    def wind_up(self):
        """Give back the runs not started, record the endings, and ring for what waits."""
        with self.lock:
            self._give_back('this worker is stopping')
            self.flush()
        self._announce()
        doorbells.ring(timezone.now(), 1, self.queue_name)

    def _flush_through_outage(self):
        """Flush, retrying through a database outage while the leases could still hold.

        Gives up (and leaves the runs to lost-run recovery) one lease length
        after the leases ran out, or at once on an error that retrying cannot
        mend (lifecycle.finish already records what it can of those).
        """
        give_up = self.held_until + self.lease.total_seconds()
        pause, warned = 0.2, False
        while self.endings:
            try:
                self.flush()
                if warned:
                    log.warning('Recorded the runs now that the database answers')
                return
            except Exception as failure:
                if not is_outage(failure) or time.monotonic() > give_up:
                    log.error('Could not record runs %s: %s; lost-run recovery will pick them '
                              'up', [ending.run.pk for ending in self.endings], failure)
                    self.endings = []
                    return
                if not warned:
                    log.warning('Cannot record runs %s yet: %s; retrying',
                                [ending.run.pk for ending in self.endings], first_line(failure))
                    warned = True
                connection.close()
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    @contextlib.contextmanager
    def watch(self, run, timeout):
        """Context for executing `run`: the watchdog may interrupt it (see RunWatch)."""
        watch = RunWatch(self, run, timeout)
        self.current = watch
        try:
            yield watch
        finally:
            self.current = None
            if watch.started is not None:
                took = time.monotonic() - watch.started
                RunBatch.pace = took if RunBatch.pace is None else 0.8 * RunBatch.pace + 0.2 * took

    def _on_interrupt_signal(self, signum, frame):
        watch = self.current
        if watch is not None and watch.inside and watch.interruption is not None:
            raise watch.interruption

    # -- the watchdog's side -----------------------------------------------------------

    def tend(self, now):
        """One round of the watchdog: limits, then what waits behind a slow run, then leases."""
        watch = self.current
        if watch is not None:
            watch.check(now)
        if not self.lock.acquire(blocking=False):
            return  # the thread is recording or taking: its own step does the work
        try:
            if self.endings and now - self.ended_since > FLUSH_AFTER:
                self.flush(announce=False)
            if self.queue and now - self.taken_at > GIVE_BACK_AFTER:
                self._give_back('the runs before them in the batch are slow')
            if now >= self.next_renewal:
                self._renew(now)
        finally:
            self.lock.release()

    def _give_back(self, why):
        """Return the runs not started to the table and ring for them (with the lock held).

        They leave the queue only once that is written: after a database error
        they are still ours, and a later round tries again.
        """
        runs = list(self.queue)
        if not runs:
            return
        given = lifecycle.give_back([run.pk for run in runs])
        for run in runs:
            self.queue.remove(run)  # given back, or no longer ours (lost, stopped)
        if given:
            log.info('Gave back %d run(s) for other workers to take: %s', len(given), why)
            doorbells.ring(timezone.now(), min(len(given), doorbells.PER_TICK), self.queue_name)

    def _renew(self, now):
        held = [run.pk for run in self.queue] + [ending.run.pk for ending in self.endings]
        watch = self.current
        if watch is not None:
            held.append(watch.run.pk)
        if not held:
            self.next_renewal = now + min(self.lease.total_seconds() / 3, MAX_RENEWAL_INTERVAL)
            return
        self.next_renewal = now + RENEWAL_RETRY  # if this one fails
        renewed = lifecycle.renew(held, self.lease)
        self.next_renewal = now + min(self.lease.total_seconds() / 3, MAX_RENEWAL_INTERVAL)
        if renewed:
            self.held_until = now + self.lease.total_seconds()
        if len(renewed) == len(held):
            return
        states = {pk: (status, stop) for pk, status, stop in TaskRun.objects.filter(
            pk__in=[pk for pk in held if pk not in renewed]).values_list(
            'pk', 'status', 'stop_requested')}
        for run in list(self.queue):
            if run.pk in states:
                self.queue.remove(run)  # lost, or asked to stop before it started
                if states[run.pk] == (TaskRun.RUNNING, True):
                    self.record(_stopped_before_start(run))
        if watch is not None and watch.run.pk in states and watch.interruption is None:
            status, stop = states[watch.run.pk]
            if (status, stop) == (TaskRun.RUNNING, True):
                watch.interrupt(TaskRun.STOPPED, 'an operator asked to stop it')
            elif status != TaskRun.RUNNING:
                watch.interrupt(TaskRun.LOST, 'its lease had run out and the run was recorded '
                                              '%s (was the worker paused?)' % status)


def _stopped_before_start(run):
    """The ending of a run an operator stopped while it waited in a batch: never called."""
    return Ending(run, TaskRun.STOPPED, 'An operator asked to stop it before it started.',
                  None, timezone.now())


def _recorded(endings, ours):
    for ending in endings:
        checkpoint('recorded', ending.run)
        if ending.run.pk in ours:
            signals.send_run_finished(ending.run.task, ending.run)


class Watchdog:
    """The one thread per worker process that tends every RunBatch under way."""

    lock = threading.Lock()
    batches = set()
    thread = None
    outage_since = None  # monotonic time the database stopped answering it, or None

    @classmethod
    def tend(cls, batch):
        with cls.lock:
            cls.batches.add(batch)
            if cls.thread is None or not cls.thread.is_alive():  # first use, or after a fork
                cls.thread = threading.Thread(target=cls._loop, daemon=True, name='sisy-watchdog')
                cls.thread.start()

    @classmethod
    def forget(cls, batch):
        with cls.lock:
            cls.batches.discard(batch)

    @classmethod
    def _loop(cls):
        while True:
            time.sleep(WATCH_INTERVAL)
            with cls.lock:
                batches = list(cls.batches)
            failure = None
            for batch in batches:
                try:
                    batch.tend(time.monotonic())
                except Error as error:
                    # A passing error must not end the rounds, or a long run is declared lost.
                    failure = error
                except Exception:
                    log.exception('The watchdog failed tending a batch; it goes on')
            cls._note_outage(failure)
            # Its database work is a statement every few seconds at most: hold no session.
            connection.close()

    @classmethod
    def _note_outage(cls, failure):
        """Log one line when the database stops answering the watchdog, one when it answers.

        Rounds come every WATCH_INTERVAL: a line per failed round would flood the log.
        """
        if failure is not None:
            if cls.outage_since is None:
                cls.outage_since = time.monotonic()
                log.warning('The watchdog could not reach the database: %s; it keeps trying '
                            'every %s s', first_line(failure), WATCH_INTERVAL)
            else:
                log.debug('The watchdog still cannot reach the database: %s',
                          first_line(failure))
        elif cls.outage_since is not None and cls._answers():
            log.warning('The watchdog reaches the database again, after %.1f s',
                        time.monotonic() - cls.outage_since)
            cls.outage_since = None

    @staticmethod
    def _answers():
        """Whether the database answers now (asked only during an outage).

        A round with nothing to write proves nothing, and the batch that met the
        outage may have ended since, so the watchdog asks the database itself.
        """
        try:
            connection.ensure_connection()
            return connection.is_usable()
        except Error:
            return False


class RunWatch:
    """One run's function under way: its limits, and how to interrupt it."""

    def __init__(self, batch, run, timeout):
        self.batch, self.run = batch, run
        self.timeout = float(timeout) if timeout else None
        self.lock = threading.Lock()
        self.started = None          # monotonic time the function was called
        self.started_at = None       # the same on the wall clock
        self.inside = False          # the function is executing now
        self.interruption = None     # the RunInterrupted to raise, once decided
        self.interrupted_at = None

    @contextlib.contextmanager
    def interruptible(self):
        """Context for the function call: interruptions are raised only inside it."""
        with self.lock:
            self.started, self.started_at = time.monotonic(), timezone.now()
            self.inside = True
            pending = self.interruption
        try:
            if pending is not None:
                raise pending
            yield
        finally:
            with self.lock:
                self.inside = False
                if not self.batch.in_main_thread and self.interruption is not None:
                    _set_async_exception(self.batch.thread_id, None)  # not delivered: drop it

    def check(self, now):
        """The watchdog's look at the run: interrupt it, or give up on it, if due."""
        if not self.inside:
            return  # not called yet, or returned: nothing of the user's to interrupt
        if self.interruption is not None:
            if now - self.interrupted_at > GRACE_SECONDS:
                self._give_up()
        elif self.timeout is not None and now - self.started > self.timeout:
            self.interrupt(TaskRun.TIMEOUT, 'it ran longer than its timeout of %s s'
                           % self.timeout)
        elif ShutdownSignals.requested_at is not None \
                and now - ShutdownSignals.requested_at > GRACE_SECONDS:
            self.interrupt(TaskRun.LOST, 'the worker was shut down and the function did '
                                         'not end within %s s' % GRACE_SECONDS)

    def interrupt(self, outcome, reason):
        """Make the function raise RunInterrupted(outcome, reason) as soon as it can."""
        with self.lock:
            if self.interruption is not None:
                return
            self.interruption = RunInterrupted(outcome, reason)
            self.interrupted_at = time.monotonic()
            # Delivered under the lock: once the function has left interruptible(),
            # whose exit cancels anything undelivered under the same lock, nothing
            # can land in Sisy's own code.
            if self.inside:
                if self.batch.in_main_thread:
                    signal.pthread_kill(self.batch.thread_id, INTERRUPT_SIGNAL)
                else:
                    _set_async_exception(self.batch.thread_id, RunInterrupted)
        log.warning('Interrupting run %s of %r: %s', self.run.pk, self.run.task_label, reason)

    def _give_up(self):
        """The function ignored its interruption: record the runs, then end this process."""
        interruption = self.interruption
        error = ('%s; the function did not give way within %s s of being interrupted, so '
                 'the worker process (pid %s) exited with status %s.'
                 % (interruption.reason, GRACE_SECONDS, os.getpid(), HUNG_EXIT_STATUS))
        log.critical('Run %s of %r: %s', self.run.pk, self.run.task_label, error)
        try:
            with self.batch.lock:
                self.batch.record(Ending(self.run, interruption.outcome, error,
                                         self.started_at, timezone.now()))
                self.batch.flush()
        except Exception:
            log.exception('Could not record run %s before exiting', self.run.pk)
        logging.shutdown()
        os._exit(HUNG_EXIT_STATUS)


def _set_async_exception(thread_id, exception_class):
    """Raise `exception_class` in another thread at its next bytecode (None cancels)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id),
        ctypes.py_object(exception_class) if exception_class is not None else None)
