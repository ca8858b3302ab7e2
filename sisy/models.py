"""Sisy's tables: tasks and the record of their runs, plus the ways to create tasks."""

import datetime as dt
import json
import logging

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sisy import signals
from sisy.callables import describe_callable, dotted_path
from sisy.conf import setting
from sisy.schedule import InvalidSchedule, Schedule
from sisy.tracking import LoadedFields
from sisy.validation import (  # noqa: F401 (the limits, and the validator migrations name)
    DEFAULT_QUEUE, MAX_ITERATIONS, MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS, MIN_PRIORITY,
    check_delay_until, encode_userdata, task_problems, validate_schedule_field, validate_task)

log = logging.getLogger('sisy.models')

PUBLIC_FIELDS = ('label', 'schedule', 'enabled', 'start_running', 'end_running',
                 'wait_for_schedule', 'iterations', 'allow_overlap', 'timeout', 'retries',
                 'retry_delay', 'priority', 'queue_name')
# A change to any of these means the next run has to be worked out again.
TIMING_FIELDS = ('schedule', 'start_running', 'end_running', 'wait_for_schedule', 'enabled')


class _DefaultTimeout:
    """A `timeout` keyword left out: SISY_DEFAULT_TIMEOUT applies (None means no limit)."""

    def __repr__(self):
        return 'SISY_DEFAULT_TIMEOUT'


DEFAULT_TIMEOUT = _DefaultTimeout()


def default_schedule():
    """The schedule new tasks get: SISY_DEFAULT_SCHEDULE."""
    return setting('SISY_DEFAULT_SCHEDULE')


def default_timeout():
    """The timeout new tasks get: SISY_DEFAULT_TIMEOUT (seconds, or None for no limit)."""
    return setting('SISY_DEFAULT_TIMEOUT')


class TaskQuerySet(models.QuerySet):

    def claimable(self):
        """Tasks a tick may claim a slot of: enabled, with slots left, free to start a run.

        Free: overlap allowed, or no run active. sisy.storage's batch claim
        spells the same rule in SQL.
        """
        return (self.filter(enabled=True, finished_at=None)
                .filter(Q(allow_overlap=True) | Q(running=False)))

    def due(self, when):
        """Tasks a tick at `when` claims: claimable ones whose next run is at or before it."""
        return self.claimable().filter(next_run__lte=when)

    def finished(self):
        """Tasks with no slot left and no run waiting or under way: the reaper deletes these.

        Judged by the runs, not by `running`: a run of an allow_overlap task that
        finishes while a tick claims the last slot can leave that flag False.
        """
        active = TaskRun.objects.filter(task=OuterRef('pk'), status__in=TaskRun.ACTIVE)
        return (self.filter(finished_at__isnull=False)
                .annotate(has_active_run=Exists(active)).filter(has_active_run=False))


class Task(LoadedFields, models.Model):
    """A function to run on a cron schedule, with its timing and lifecycle."""

    label = models.CharField(
        max_length=255, db_index=True,
        help_text='Any name you like; defaults to the dotted path of the function.')
    schedule = models.CharField(
        max_length=200, default=default_schedule, validators=[validate_schedule_field],
        help_text='Cron schedule in local time: minute hour day-of-month month day-of-week '
                  '[second]. (Example: "30 0 * * *" runs at 00:30 every day.)')
    enabled = models.BooleanField(default=True, help_text='A disabled task never runs.')
    start_running = models.DateTimeField(
        null=True, blank=True, help_text='No run before this time. (Blank: from now.)')
    end_running = models.DateTimeField(
        null=True, blank=True,
        help_text='No run after this time; the task is then deleted. (Blank: no end.)')
    wait_for_schedule = models.BooleanField(
        default=True, help_text='Unticked: the first run happens as soon as the task '
                                'starts, not at the first scheduled time.')
    iterations = models.PositiveIntegerField(
        default=0, help_text='Runs left before the task is deleted. (0: run forever.)')
    allow_overlap = models.BooleanField(
        default=False, help_text='Allow a run to start while the previous one is still going.')
    timeout = models.FloatField(
        null=True, blank=True, default=default_timeout,
        help_text='Seconds a run may take; a run past it is interrupted and recorded as '
                  '"timeout". (Example: 300. Blank: no limit.)')
    retries = models.PositiveIntegerField(
        default=0, help_text='How many more attempts a run that ends in an error, a timeout '
                             'or lost (its worker died) gets. (Example: 3.)')
    retry_delay = models.FloatField(
        default=60, help_text='Seconds to wait before each further attempt. (Example: 60.)')
    priority = models.SmallIntegerField(
        default=0, help_text='%d to %d: among runs waiting for a worker, higher ones start '
                             'first.' % (MIN_PRIORITY, MAX_PRIORITY))
    queue_name = models.CharField(
        max_length=100, default=DEFAULT_QUEUE,
        help_text='The queue its runs wait in (one of SISY_QUEUES); workers can be dedicated '
                  'to a queue.')

    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)
    last_run = models.DateTimeField(null=True, blank=True, editable=False)
    next_run = models.DateTimeField(null=True, blank=True, editable=False)
    running = models.BooleanField(
        default=False, editable=False, verbose_name='has an active run',
        help_text='True while one of its runs is waiting for a worker or running.')
    # Not when a run finished (that is TaskRun.finished_at): when the task ran out of slots.
    finished_at = models.DateTimeField(
        null=True, blank=True, editable=False, verbose_name='out of slots since',
        help_text='When the task was left with no slot to claim (its last slot claimed, its '
                  'iterations used up or its end passed); it never runs again and is deleted '
                  'once its runs are done.')
    last_outcome = models.CharField(max_length=10, blank=True, editable=False)
    disabled_reason = models.TextField(
        blank=True, editable=False, help_text='Why Sisy disabled this task, if it did.')
    _func_info = models.TextField(editable=False)
    _extra_data = models.TextField(default='{}', blank=True, editable=False)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ('next_run', 'pk')
        indexes = [
            models.Index(fields=['enabled', 'next_run'], name='sisy_task_due'),
            # Each tick looks for finished tasks to reap and for running flags to repair.
            models.Index(fields=['finished_at'], name='sisy_task_finished'),
            models.Index(fields=['running'], name='sisy_task_running'),
        ]

    def __str__(self):
        return self.label

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._userdata = None

    def refresh_from_db(self, using=None, fields=None):
        if fields is None or '_extra_data' in fields:
            self._userdata = None  # decoded again from what was reloaded
        super().refresh_from_db(using=using, fields=fields)

    # -- callable and user data -------------------------------------------------

    @property
    def funcinfo(self):
        """The stored description of the task's function (module, name, kind, model row)."""
        try:
            return json.loads(self._func_info)
        except ValueError as error:
            raise ValueError('Task %r has unreadable function info %r: %s'
                             % (self.label, self._func_info, error))

    @property
    def function_path(self):
        """The dotted path of the task's function, for people to read."""
        return dotted_path(self.funcinfo)

    @property
    def userdata(self):
        """A dict of JSON data kept with the task; changes are saved with the task."""
        if self._userdata is None:
            try:
                data = json.loads(self._extra_data or '{}')
            except ValueError as error:
                raise ValueError('Task %r has invalid userdata JSON %r: %s'
                                 % (self.label, self._extra_data, error))
            if not isinstance(data, dict):
                raise ValueError('Task %r has userdata %r; expected a JSON object (a dict).'
                                 % (self.label, self._extra_data))
            self._userdata = data
        return self._userdata

    @userdata.setter
    def userdata(self, value):
        self._extra_data = encode_userdata(value)
        self._userdata = json.loads(self._extra_data)

    def _store_userdata(self):
        if self._userdata is not None:
            self._extra_data = encode_userdata(self._userdata)

    # -- timing -------------------------------------------------------------------

    def get_schedule(self):
        return Schedule(self.schedule)

    def first_run(self, now):
        """When a newly saved (or re-timed) task next runs, or None if it never will.

        Without `wait_for_schedule` that is at once (or at the start) only while
        the task has not run: once it has, an edit or re-enabling keeps to the
        schedule instead of running it again off schedule.
        """
        start = max(now, self.start_running) if self.start_running else now
        if self.wait_for_schedule or self.has_run():
            first = self.get_schedule().next_after(
                start - dt.timedelta(microseconds=1), timezone.get_default_timezone())
        else:
            first = start
        return self._within_end(first)

    def has_run(self):
        """True once a slot of this task was claimed, whatever became of the run.

        A claim writes a run record in the same transaction as it moves
        `next_run`, and `last_run` outlives the records that history pruning
        deletes; so either one means the first run is no longer to come.
        """
        if self.last_run is not None:
            return True
        if self.pk is None or self._state.adding:
            return False
        return TaskRun.objects.filter(task_id=self.pk).exists()

    def run_after(self, when, known=None):
        """The next run after the run claimed at `when`, or None when that was the last.

        `known` maps schedules to their next time after `when`, so a tick claiming
        many tasks works each schedule out once (it is filled in as it goes).
        """
        if self.iterations == 1:
            return None
        known = {} if known is None else known
        if self.schedule not in known:
            known[self.schedule] = self.get_schedule().next_after(
                when, timezone.get_default_timezone())
        return self._within_end(known[self.schedule])

    def planned_runs(self, now, count):
        """The next `count` run times as the task stands, unsaved timing changes included."""
        if not self.enabled or self.finished_at is not None:
            return []
        changed = self._changed_fields()
        retimed = changed is None or set(TIMING_FIELDS) & set(changed)
        when = self.first_run(now) if retimed else self.next_run
        limit = min(count, self.iterations) if self.iterations else count
        schedule, zone = self.get_schedule(), timezone.get_default_timezone()
        times = []
        while when is not None and len(times) < limit:
            times.append(when)
            when = self._within_end(schedule.next_after(when, zone))
        return times

    def _within_end(self, when):
        if self.end_running is not None and when > self.end_running:
            return None
        return when

    # -- validation and saving --------------------------------------------------

    def clean_fields(self, exclude=None):
        # clean() reports these fields naming the value and the limit; Django's own
        # field checks would only say the same again, less clearly.
        exclude = set(exclude or ()) | set(task_problems(self))
        super().clean_fields(exclude=exclude)

    def clean(self):
        super().clean()
        validate_task(self, error_class=ValidationError)

    def save(self, *args, **kwargs):
        """Validate, work out the next run if timing changed, and write what changed.

        An existing task writes only the fields changed since it was loaded, so a
        stale copy cannot undo what a worker recorded meanwhile. A new next run is
        written only if no tick claimed the slot this copy saw (compare-and-set),
        and a finished task is never given new slots. An enabled task left with
        no slot before its end is saved finished, so the reaper deletes it.
        """
        try:
            self.schedule = Schedule(self.schedule).expression
        except InvalidSchedule as error:
            raise ValidationError({'schedule': [str(error)]})
        validate_task(self, error_class=ValidationError)
        self._store_userdata()
        changed = self._changed_fields()
        if changed is None:  # new, or not loaded from the database
            no_slot = False
            if self.next_run is None and self.finished_at is None:
                now = timezone.now()
                self.next_run = self.first_run(now)
                no_slot = self.next_run is None and self.enabled
                if no_slot:  # finished at once, so the reaper deletes it
                    self.finished_at = now
            super().save(*args, **kwargs)
            if no_slot:
                self._log_no_slot_left()
        else:
            if self.enabled and 'enabled' in changed:
                self.disabled_reason = ''
                changed.append('disabled_reason')
                signals.task_reenabled.send(Task, task=self, now=timezone.now())
            update_fields = kwargs.pop('update_fields', None) or changed
            retime = (self.enabled and self.finished_at is None
                      and set(TIMING_FIELDS) & set(update_fields))
            if retime:
                self._save_retimed(update_fields)
            else:
                super().save(*args, update_fields=sorted(set(update_fields) | {'modified_at'}),
                             **kwargs)
        self._remember_loaded()

    save.alters_data = True

    def _save_retimed(self, fields):
        """Write `fields` and a new next run, unless a tick moved the slot meanwhile.

        If a tick claimed the slot this copy saw, the new next run is worked out
        again to fall after that slot, so the same slot is never handed back.
        """
        self.modified_at = timezone.now()
        values = {name: getattr(self, name) for name in set(fields) | {'modified_at'}
                  if name != 'next_run'}
        after = None
        for _ in range(10):
            seen = self._loaded.get('next_run')
            now = timezone.now()
            self.next_run = self.first_run(now if after is None else max(now, after))
            # No slot left before its end: finished, so the reaper deletes it.
            finished = now if self.next_run is None else None
            written = Task.objects.filter(pk=self.pk, next_run=seen, finished_at__isnull=True)
            if seen is None:
                written = Task.objects.filter(pk=self.pk, next_run__isnull=True,
                                              finished_at__isnull=True)
            if written.update(next_run=self.next_run, finished_at=finished, **values):
                self.finished_at = finished
                if finished is not None:
                    self._log_no_slot_left()
                return
            fresh = Task.objects.filter(pk=self.pk).values('next_run', 'finished_at').first()
            if fresh is None:
                raise Task.DoesNotExist('Task %s was deleted while it was being saved.'
                                        % self.pk)
            if fresh['finished_at'] is not None:  # its last slot was claimed meanwhile
                self.next_run, self.finished_at = fresh['next_run'], fresh['finished_at']
                Task.objects.filter(pk=self.pk).update(**values)
                return
            if seen is not None:
                after = seen + dt.timedelta(microseconds=1)
            self._loaded['next_run'] = fresh['next_run']
        raise RuntimeError('Task %s: could not save its new timing; its slot kept moving.'
                           % self.pk)

    def _log_no_slot_left(self):
        ends = self.end_running.isoformat() if self.end_running else 'its end'
        log.warning('Task %r has no slot left before its end (%s); it is finished and will '
                    'be deleted', self.label, ends)

    # -- helpers users call -------------------------------------------------------

    @classmethod
    def run_iterations(cls, the_callable, iterations=1, label=None, schedule='* * * * * *',
                       userdata=None, run_immediately=False, delay_until=None,
                       timeout=DEFAULT_TIMEOUT):
        """Save and return a task that runs `iterations` times, then is deleted.

        `timeout` is seconds, or None for no limit; left out, SISY_DEFAULT_TIMEOUT applies.
        With SISY_ALWAYS_EAGER, a first run due now (`run_immediately` and no
        `delay_until`) happens in this call; the task returned is then as it
        stands after that run (see sisy.testing).
        """
        if isinstance(iterations, bool) or not isinstance(iterations, int) or \
                not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError('iterations must be a whole number of runs, 1 to %d; got %r.'
                             % (MAX_ITERATIONS, iterations))
        if delay_until is not None:
            check_delay_until(delay_until)
        fields = {} if timeout is DEFAULT_TIMEOUT else {'timeout': timeout}
        task = task_with_callable(
            the_callable, label=label, schedule=schedule, userdata=userdata,
            iterations=iterations, wait_for_schedule=not run_immediately,
            start_running=delay_until, **fields)
        task.save()
        if run_immediately and delay_until is None:
            signals.task_due_now.send(Task, task=task)
        return task

    @classmethod
    def run_once(cls, the_callable, userdata=None, delay_until=None, timeout=DEFAULT_TIMEOUT):
        """Save and return a task that runs once, now or at `delay_until`, then is deleted.

        `timeout` is seconds, or None for no limit; left out, SISY_DEFAULT_TIMEOUT applies.
        With SISY_ALWAYS_EAGER and no `delay_until`, the run happens in this call.
        """
        return cls.run_iterations(the_callable, iterations=1, userdata=userdata,
                                  run_immediately=True, delay_until=delay_until,
                                  timeout=timeout)


class TaskRun(models.Model):
    """One attempt at one slot of a task: claimed, taken by a worker, then finished.

    claim -> pending; take: pending -> running; give_back: running -> pending
    (taken, not started); finish: running -> ok | error | timeout | stopped |
    skipped (the task was disabled or deleted before the function was called);
    lose_expired: running -> lost (its worker stopped renewing the lease). A
    retry is a new pending record with the next attempt number (sisy.lifecycle).
    """

    PENDING, RUNNING = 'pending', 'running'
    OK, ERROR, TIMEOUT, STOPPED, LOST, SKIPPED = (
        'ok', 'error', 'timeout', 'stopped', 'lost', 'skipped')
    STATUS_CHOICES = (
        (PENDING, 'waiting for a worker'), (RUNNING, 'running'), (OK, 'ok'),
        (ERROR, 'error'), (TIMEOUT, 'timeout'), (STOPPED, 'stopped by an operator'),
        (LOST, 'lost (worker stopped)'), (SKIPPED, 'skipped (task disabled or deleted)'),
    )
    # The groups every module reads outcomes by; a new outcome joins its groups here.
    ACTIVE = (PENDING, RUNNING)                     # still has work to do
    DONE = (OK, ERROR, TIMEOUT, STOPPED, LOST, SKIPPED)
    FAILED = (ERROR, TIMEOUT, LOST)                 # counts towards a failing streak
    SETTLED = (OK, STOPPED)                         # ends a failing streak
    ATTEMPTED = (OK, ERROR, TIMEOUT, STOPPED, LOST)  # the function was (to be) called:
    #                                                 an iteration and a last outcome
    RETRYABLE = FAILED                              # a task's retries give another attempt

    task = models.ForeignKey(Task, null=True, on_delete=models.SET_NULL, related_name='runs')
    task_label = models.CharField(max_length=255)
    # A hand-off job (sisy.tasks) is a run with no task: what to call is kept on the run.
    function = models.CharField(
        max_length=255, blank=True,
        help_text="A hand-off job's function (module:name); blank for a task's run.")
    arguments = models.TextField(blank=True, help_text='A hand-off job\'s arguments (JSON).')
    options = models.TextField(
        blank=True, help_text="A hand-off job's timeout, retries, retry delay and context "
                              "(JSON).")
    return_value = models.TextField(blank=True, help_text='What the function returned (JSON).')
    first_attempt = models.IntegerField(
        null=True, blank=True, db_index=True,
        help_text="A hand-off job's later attempt: the id of its first (the job's id).")
    priority = models.SmallIntegerField(default=0)
    queue_name = models.CharField(max_length=100, default=DEFAULT_QUEUE)
    scheduled_for = models.DateTimeField()
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text='A retry waits until this time.')
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text='Seconds.')
    lease_until = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ('-scheduled_for', '-pk')
        indexes = [
            # The queues: per queue, the highest priority first, then the oldest.
            models.Index(fields=['status', 'queue_name', '-priority', 'id'],
                         name='sisy_run_waiting'),
            models.Index(fields=['status', 'lease_until'], name='sisy_run_lease'),
            models.Index(fields=['task', 'status'], name='sisy_run_task'),
            # The run that held a late slot back: the newest ends of one task's runs.
            models.Index(fields=['task', 'finished_at'], name='sisy_run_task_finished'),
        ]

    def __str__(self):
        return '%s at %s: %s' % (self.task_label, self.scheduled_for, self.status)

    @property
    def is_job(self):
        """Whether this is a hand-off job's run (sisy.tasks), not a task's."""
        return bool(self.function)

    @property
    def job_id(self):
        """A hand-off job's id: that of its first attempt."""
        return self.first_attempt or self.pk

    @property
    def job_options(self):
        """A hand-off job's options as a dict (timeout, retries, retry_delay, takes_context)."""
        return json.loads(self.options) if self.options else {}


def task_with_callable(the_callable, label=None, schedule=None, userdata=None,
                       pk_override=None, **fields):
    """Return an unsaved Task that runs `the_callable` (an object or its dotted path).

    Other keywords set the Task's public fields (start_running, iterations, ...).
    """
    unknown = sorted(set(fields) - set(PUBLIC_FIELDS))
    if unknown:
        raise TypeError('task_with_callable() got unexpected keyword(s) %s; it accepts %s.'
                        % (', '.join(unknown), ', '.join(PUBLIC_FIELDS)))
    if schedule is None:
        schedule = default_schedule()
    schedule = Schedule(schedule).expression
    info = describe_callable(the_callable, pk_override=pk_override)
    task = Task(label=label or dotted_path(info), schedule=schedule,
                _func_info=json.dumps(info, sort_keys=True), **fields)
    task.userdata = userdata
    validate_task(task)
    return task


def taskinfo_with_label(label):
    """Return the stored function info of the newest task labelled `label`."""
    task = Task.objects.filter(label=label).order_by('-created_at', '-pk').first()
    if task is None:
        raise Task.DoesNotExist('No Sisy task is labelled %r.' % (label,))
    return task.funcinfo


class TickRecord(models.Model):
    """The last tick each worker process handled: how operators know the scheduler lives."""

    worker = models.CharField(max_length=255, unique=True, help_text='host and pid')
    tick = models.DateTimeField(help_text="The tick's time.")
    processed_at = models.DateTimeField(help_text="When the worker handled it (its clock).")
    claimed = models.PositiveIntegerField(default=0, help_text='Runs claimed by that tick.')

    def __str__(self):
        return '%s: tick %s' % (self.worker, self.tick)


class SlotEvent(models.Model):
    """Why scheduled slots of a task did not start on time: one row per event, not per slot.

    Late starts and retries are read from the runs themselves; these are the
    slots that had no run of their own, or ran at another time.
    """

    NO_TICK, HELD_BACK, LATE_CLAIM, DST_MOVED, DISABLED = (
        'no_tick', 'held_back', 'late_claim', 'dst_moved', 'disabled')
    KIND_CHOICES = (
        (NO_TICK, 'no tick came (heartbeat or workers down)'),
        (HELD_BACK, 'held back: the previous run was still going'),
        (LATE_CLAIM, 'claimed late'),
        (DST_MOVED, 'moved by a daylight-saving gap'),
        (DISABLED, 'skipped: the task was disabled'),
    )

    # No database constraint: finishing a one-off deletes its task in raw SQL without
    # touching these rows (they keep the label and age out with the run history).
    task = models.ForeignKey(Task, null=True, on_delete=models.SET_NULL, related_name='+',
                             db_constraint=False)
    task_label = models.CharField(max_length=255)
    kind = models.CharField(max_length=12, choices=KIND_CHOICES)
    first_slot = models.DateTimeField(help_text='The first slot concerned.')
    last_slot = models.DateTimeField(help_text='The last slot concerned.')
    slots = models.PositiveIntegerField(default=1, help_text='How many slots (at most 101 '
                                                             'are counted).')
    ran_at = models.DateTimeField(null=True, blank=True,
                                  help_text='When they were run once instead, if they were.')
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ('-first_slot', '-pk')
        indexes = [models.Index(fields=['task', 'first_slot'], name='sisy_event_task')]

    def __str__(self):
        return '%s: %s from %s' % (self.task_label, self.kind, self.first_slot)
