"""Execute one claimed run on a worker: call the function under watch, record what happened.

While the function runs, a watcher thread renews the run's lease and
interrupts the function when its timeout passes, an operator asks to stop it,
the run's lease was taken away (the worker had been paused), or the worker is
told to shut down and the function does not end within the grace period. A
function that ignores the interruption for GRACE_SECONDS more gets its run
recorded from the watcher, and the worker process exits with HUNG_EXIT_STATUS
so that its process manager starts a fresh one.
"""

import contextlib
import ctypes
import datetime as dt
import logging
import os
import signal
import threading
import time
import traceback

from channels.message import Message
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from sisy import dispatch, lifecycle, signals
from sisy.callables import load_callable
from sisy.conf import setting
from sisy.models import TaskRun, encode_userdata

log = logging.getLogger('sisy.runner')

GRACE_SECONDS = 5.0
# How long a worker goes on taking waiting runs from the table before it
# returns to its channels (where ticks and other messages wait).
DRAIN_SECONDS = 1.0
# EX_TEMPFAIL: the worker gave up on a hung function; restart it.
HUNG_EXIT_STATUS = 75
# The signal the watcher sends the main thread to interrupt a blocking call.
INTERRUPT_SIGNAL = signal.SIGUSR1
WATCH_INTERVAL = 0.2  # seconds between the watcher's checks
# Renewing the lease is also when the watcher learns of an operator's stop.
MAX_RENEWAL_INTERVAL = 5.0


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

    The run message is a doorbell: if `run_id` was taken already (a duplicate
    message), the oldest waiting run is taken instead. Returns the outcomes of
    the runs executed, in order (empty when there was nothing to run).
    """
    outcomes = []
    stop_at = time.monotonic() + DRAIN_SECONDS
    lease = lease_length()
    with ShutdownSignals():
        run = (lifecycle.take(timezone.now(), lease, run_id)
               or lifecycle.take(timezone.now(), lease))
        while run is not None:
            outcomes.append(_execute(run, lease, message))
            if time.monotonic() >= stop_at or ShutdownSignals.requested_at is not None:
                dispatch.ring_doorbells(timezone.now(), 1)  # runs may be left: say so
                break
            run = lifecycle.take(timezone.now(), lease)
    return outcomes


class ShutdownSignals:
    """Notes SIGTERM/SIGINT while this worker executes runs, then tells Channels' handler.

    Channels' worker would otherwise wait for a hung function for ever; the
    run's watcher reads `requested_at` and interrupts the function after
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


def _execute(run, lease, doorbell):
    """Execute one run this worker has taken; return its outcome."""
    checkpoint('taken', run)
    task = run.task
    if task is None or not task.enabled:
        if lifecycle.skip(run, 'The task was %s before the run started.'
                          % ('deleted' if task is None else 'disabled')):
            signals.send_run_finished(task, run)
        return TaskRun.SKIPPED
    try:
        function = load_callable(task.funcinfo)
    except Exception:  # any error importing the user's module: SyntaxError, NameError, ...
        reason = 'Cannot load the task function:\n%s' % traceback.format_exc()
        lifecycle.disable(task.pk, reason, label=task.label)
        if _record(run, TaskRun.ERROR, reason, lease):
            signals.send_run_finished(task, run)
        return TaskRun.ERROR

    log.info('Running %r (run %s, attempt %d, scheduled for %s)', task.label, run.pk,
             run.attempt, run.scheduled_for.isoformat())
    stored_data = task._extra_data
    outcome, error = TaskRun.OK, ''
    signals.run_started.send_safely(TaskRun, task=task, run=run)
    with RunWatch(run, task.timeout, lease) as watch:
        try:
            with watch.interruptible():
                function({'task': task, 'message': _message_for(run, doorbell)})
        except RunInterrupted:
            # In a worker thread the raised instance is a bare one: the watch knows why.
            interruption = watch.interruption
            outcome, error = interruption.outcome, traceback.format_exc()
            log.error('Task %r (run %s) was interrupted: %s', task.label, run.pk,
                      interruption.reason)
        except Exception:
            outcome, error = TaskRun.ERROR, traceback.format_exc()
            log.exception('Task %r (run %s) raised', task.label, run.pk)
    checkpoint('returned', run)
    userdata = None
    try:
        if task._userdata is not None:
            userdata = encode_userdata(task._userdata)
            userdata = None if userdata == stored_data else userdata
    except ValueError as bad_data:
        outcome = TaskRun.ERROR
        error = (error + '\n' if error else '') + 'userdata was not saved: %s' % bad_data
        log.error('Task %r left userdata that cannot be saved: %s', task.label, bad_data)
    recorded = _record(run, outcome, error, lease, userdata, held_until=watch.held_until)
    checkpoint('recorded', run)
    if recorded:
        signals.send_run_finished(task, run)
    return outcome


def _message_for(run, doorbell):
    """The Channels message a task function receives: the one naming its run.

    A run taken straight from the table gets a message like the one the tick
    would have sent for it, on the same channel and layer as the doorbell.
    """
    content = getattr(doorbell, 'content', None)
    if doorbell is None or (isinstance(content, dict) and content.get('run_id') == run.pk):
        return doorbell
    return Message({'run_id': run.pk}, doorbell.channel.name, doorbell.channel_layer)


def _record(run, outcome, error, lease, userdata=None, held_until=None):
    """Finish the run, retrying through a database outage while the lease could still hold.

    Gives up (and leaves the run to lost-run recovery) one lease length after
    the lease ran out. Returns True if the outcome was recorded as the run's own.
    """
    give_up = (held_until or time.monotonic() + lease.total_seconds()) + lease.total_seconds()
    pause, warned = 0.2, False
    while True:
        try:
            ours = lifecycle.finish(run, outcome, error, userdata)
            if warned:
                log.warning('Recorded run %s (%s) now that the database answers', run.pk,
                            outcome)
            return ours
        except DatabaseError as failure:
            if time.monotonic() > give_up:
                log.error('Could not record run %s (%s): %s; lost-run recovery will '
                          'pick it up', run.pk, outcome, failure)
                return False
            if not warned:
                log.warning('Cannot record run %s (%s) yet: %s; retrying', run.pk, outcome,
                            str(failure).strip().splitlines()[0] if str(failure) else failure)
                warned = True
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


class RunWatch:
    """A thread that watches one run while its function executes; see the module doc."""

    def __init__(self, run, timeout, lease):
        self.run, self.lease = run, lease
        self.timeout = float(timeout) if timeout else None
        self.thread_id = threading.get_ident()
        self.in_main_thread = threading.current_thread() is threading.main_thread()
        self.lock = threading.Lock()
        self.inside = False          # the function is executing now
        self.done = threading.Event()
        self.interruption = None     # the RunInterrupted to raise, once decided
        self.interrupted_at = None
        self.held_until = None       # monotonic time the lease is known to hold until
        self.saved_handler = None
        self.watcher = threading.Thread(target=self._watch, daemon=True,
                                        name='sisy-watch-%s' % run.pk)

    def __enter__(self):
        self.started = time.monotonic()
        self.held_until = self.started + self.lease.total_seconds()
        if self.in_main_thread:
            self.saved_handler = signal.signal(INTERRUPT_SIGNAL, self._on_interrupt_signal)
        self.watcher.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.watcher.join()
        if self.in_main_thread:
            signal.signal(INTERRUPT_SIGNAL, self.saved_handler)

    @contextlib.contextmanager
    def interruptible(self):
        """Context for the function call: interruptions are raised only inside it."""
        with self.lock:
            self.inside = True
            pending = self.interruption
        try:
            if pending is not None:
                raise pending
            yield
        finally:
            with self.lock:
                self.inside = False
                if not self.in_main_thread and self.interruption is not None:
                    _set_async_exception(self.thread_id, None)  # not delivered: drop it

    # -- the interruption signal (main thread only) ----------------------------------

    def _on_interrupt_signal(self, signum, frame):
        if self.inside and self.interruption is not None:
            raise self.interruption

    # -- the watcher thread -----------------------------------------------------------

    def _watch(self):
        renew_every = min(self.lease.total_seconds() / 3, MAX_RENEWAL_INTERVAL)
        next_renewal = self.started + renew_every
        try:
            while not self.done.wait(WATCH_INTERVAL):
                now = time.monotonic()
                if self.interruption is None:
                    self._check_limits(now)
                elif now - self.interrupted_at > GRACE_SECONDS:
                    self._give_up()
                if now >= next_renewal:
                    next_renewal = now + renew_every
                    self._renew(now)
        finally:
            connection.close()

    def _check_limits(self, now):
        if self.timeout is not None and now - self.started > self.timeout:
            self.interrupt(TaskRun.TIMEOUT, 'it ran longer than its timeout of %s s'
                           % self.timeout)
        elif ShutdownSignals.requested_at is not None \
                and now - ShutdownSignals.requested_at > GRACE_SECONDS:
            self.interrupt(TaskRun.LOST, 'the worker was shut down and the function did '
                                         'not end within %s s' % GRACE_SECONDS)

    def _renew(self, now):
        try:
            close_old_connections()
            if lifecycle.renew(self.run.pk, timezone.now() + self.lease):
                self.held_until = now + self.lease.total_seconds()
                return
            state = TaskRun.objects.filter(pk=self.run.pk).values_list(
                'status', 'stop_requested').first()
        except DatabaseError as failure:
            # A passing error must not end renewals, or a long run is declared lost.
            log.warning('Could not renew the lease of run %s: %s; retrying', self.run.pk,
                        str(failure).strip()[:200])
            return
        if self.interruption is not None:
            return
        if state is not None and state == (TaskRun.RUNNING, True):
            self.interrupt(TaskRun.STOPPED, 'an operator asked to stop it')
        elif state is not None and state[0] != TaskRun.RUNNING:
            self.interrupt(TaskRun.LOST, 'its lease had run out and the run was recorded '
                                         '%s (was the worker paused?)' % state[0])

    def interrupt(self, outcome, reason):
        """Make the function raise RunInterrupted(outcome, reason) as soon as it can."""
        with self.lock:
            if self.interruption is not None:
                return
            self.interruption = RunInterrupted(outcome, reason)
            self.interrupted_at = time.monotonic()
            inside = self.inside
        log.warning('Interrupting run %s of %r: %s', self.run.pk, self.run.task_label, reason)
        if not inside:
            return
        if self.in_main_thread:
            signal.pthread_kill(self.thread_id, INTERRUPT_SIGNAL)
        else:
            _set_async_exception(self.thread_id, RunInterrupted)

    def _give_up(self):
        """The function ignored its interruption: record the run, then end this process."""
        interruption = self.interruption
        error = ('%s; the function did not give way within %s s of being interrupted, so '
                 'the worker process (pid %s) exited with status %s.'
                 % (interruption.reason, GRACE_SECONDS, os.getpid(), HUNG_EXIT_STATUS))
        log.critical('Run %s of %r: %s', self.run.pk, self.run.task_label, error)
        try:
            close_old_connections()
            if lifecycle.finish(self.run, interruption.outcome, error):
                signals.send_run_finished(self.run.task, self.run)
        except Exception:
            log.exception('Could not record run %s before exiting', self.run.pk)
        logging.shutdown()
        os._exit(HUNG_EXIT_STATUS)


def _set_async_exception(thread_id, exception_class):
    """Raise `exception_class` in another thread at its next bytecode (None cancels)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id),
        ctypes.py_object(exception_class) if exception_class is not None else None)
