"""Sisy's tables: tasks and the record of their runs, plus the ways to create tasks."""

import datetime as dt
import json

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sisy.callables import describe_callable, dotted_path
from sisy.conf import setting
from sisy.schedule import InvalidSchedule, Schedule

PUBLIC_FIELDS = ('label', 'schedule', 'enabled', 'start_running', 'end_running',
                 'wait_for_schedule', 'iterations', 'allow_overlap')
# A change to any of these means the next run has to be worked out again.
TIMING_FIELDS = ('schedule', 'start_running', 'end_running', 'wait_for_schedule', 'enabled')


def default_schedule():
    """The schedule new tasks get: SISY_DEFAULT_SCHEDULE."""
    return setting('SISY_DEFAULT_SCHEDULE')


def validate_schedule_field(value):
    """Model-field validator: a bad cron expression becomes a ValidationError."""
    try:
        Schedule(value)
    except InvalidSchedule as error:
        raise ValidationError(str(error), code='invalid_schedule')


class TaskQuerySet(models.QuerySet):

    def due(self, when):
        """Enabled tasks whose next run is at or before `when` and that may start now."""
        return (self.filter(enabled=True, next_run__lte=when)
                .filter(Q(allow_overlap=True) | Q(running=False)))

    def finished(self):
        """Tasks with no run left to do and none under way: the reaper deletes these."""
        return self.filter(next_run__isnull=True, running=False)


class Task(models.Model):
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

    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)
    last_run = models.DateTimeField(null=True, blank=True, editable=False)
    next_run = models.DateTimeField(null=True, blank=True, editable=False)
    running = models.BooleanField(default=False, editable=False)
    last_outcome = models.CharField(max_length=10, blank=True, editable=False)
    disabled_reason = models.TextField(
        blank=True, editable=False, help_text='Why Sisy disabled this task, if it did.')
    _func_info = models.TextField(editable=False)
    _extra_data = models.TextField(default='{}', blank=True, editable=False)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ('next_run', 'pk')
        indexes = [models.Index(fields=['enabled', 'next_run'], name='sisy_task_due')]

    def __str__(self):
        return self.label

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded = None
        self._userdata = None

    @classmethod
    def from_db(cls, db, field_names, values):
        task = super().from_db(db, field_names, values)
        task._remember_loaded()
        return task

    def _remember_loaded(self):
        self._loaded = {field.attname: getattr(self, field.attname)
                        for field in self._meta.concrete_fields
                        if field.attname in self.__dict__}

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
        """When a newly saved (or re-timed) task first runs, or None if it never will."""
        start = max(now, self.start_running) if self.start_running else now
        if self.wait_for_schedule:
            first = self.get_schedule().next_after(
                start - dt.timedelta(microseconds=1), timezone.get_default_timezone())
        else:
            first = start
        return self._within_end(first)

    def run_after(self, when):
        """The next run after the run claimed at `when`, or None when that was the last."""
        if self.iterations == 1:
            return None
        following = self.get_schedule().next_after(when, timezone.get_default_timezone())
        return self._within_end(following)

    def planned_runs(self, now, count):
        """The next `count` run times as the task stands, unsaved timing changes included."""
        if not self.enabled:
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

    def clean(self):
        super().clean()
        if self.start_running and self.end_running and self.end_running <= self.start_running:
            raise ValidationError({'end_running': 'End (%s) must be after start (%s).'
                                   % (self.end_running, self.start_running)})

    def save(self, *args, **kwargs):
        """Validate the schedule, work out the next run if timing changed, write changes.

        An existing task writes only the fields changed since it was loaded, so a
        stale copy cannot undo what a worker recorded meanwhile (e.g. next_run).
        """
        try:
            self.schedule = Schedule(self.schedule).expression
        except InvalidSchedule as error:
            raise ValidationError({'schedule': [str(error)]})
        self._store_userdata()
        changed = self._changed_fields()
        if self.enabled and 'enabled' in (changed or ()):
            self.disabled_reason = ''
            changed.append('disabled_reason')
        if self._state.adding or set(TIMING_FIELDS) & set(changed or ()):
            if self.enabled or self._state.adding:
                self.next_run = self.first_run(timezone.now())
                changed = None if changed is None else changed + ['next_run']
        if not self._state.adding and changed is not None and kwargs.get('update_fields') is None \
                and not kwargs.get('force_insert'):
            kwargs['update_fields'] = sorted(set(changed) | {'modified_at'})
        super().save(*args, **kwargs)
        self._remember_loaded()

    save.alters_data = True

    def _changed_fields(self):
        if self._loaded is None:
            return None
        return [name for name, value in self._loaded.items() if getattr(self, name) != value]

    # -- helpers users call -------------------------------------------------------

    @classmethod
    def run_iterations(cls, the_callable, iterations=1, label=None, schedule='* * * * * *',
                       userdata=None, run_immediately=False, delay_until=None):
        """Save and return a task that runs `iterations` times, then is deleted."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError('iterations must be a whole number of runs, 1 or more; got %r.'
                             % (iterations,))
        if delay_until is not None:
            check_delay_until(delay_until)
        task = task_with_callable(
            the_callable, label=label, schedule=schedule, userdata=userdata,
            iterations=iterations, wait_for_schedule=not run_immediately,
            start_running=delay_until)
        task.save()
        return task

    @classmethod
    def run_once(cls, the_callable, userdata=None, delay_until=None):
        """Save and return a task that runs once, now or at `delay_until`, then is deleted."""
        return cls.run_iterations(the_callable, iterations=1, userdata=userdata,
                                  run_immediately=True, delay_until=delay_until)


class TaskRun(models.Model):
    """One run of a task: claimed for a scheduled time, then started and finished."""

    PENDING, RUNNING, OK, ERROR, LOST = 'pending', 'running', 'ok', 'error', 'lost'
    STATUS_CHOICES = (
        (PENDING, 'waiting for a worker'), (RUNNING, 'running'), (OK, 'ok'),
        (ERROR, 'error'), (LOST, 'lost (worker stopped)'),
    )
    ACTIVE = (PENDING, RUNNING)

    task = models.ForeignKey(Task, null=True, on_delete=models.SET_NULL, related_name='runs')
    task_label = models.CharField(max_length=255)
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text='Seconds.')
    lease_until = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ('-scheduled_for', '-pk')
        indexes = [
            models.Index(fields=['status', 'queued_at'], name='sisy_run_waiting'),
            models.Index(fields=['status', 'lease_until'], name='sisy_run_lease'),
            models.Index(fields=['task', 'status'], name='sisy_run_task'),
        ]

    def __str__(self):
        return '%s at %s: %s' % (self.task_label, self.scheduled_for, self.status)


def encode_userdata(value):
    """Return userdata as JSON text; raise ValueError unless it is a JSON-able dict."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError('userdata must be a dict of JSON data; got %s %r.'
                         % (type(value).__name__, value))
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError('userdata %r cannot be stored as JSON: %s' % (value, error))


def check_delay_until(when):
    """Raise ValueError unless `when` is an aware datetime in the future."""
    if not isinstance(when, dt.datetime):
        raise ValueError('delay_until must be a datetime; got %s %r.' % (type(when).__name__, when))
    if timezone.is_naive(when):
        raise ValueError('delay_until %s has no time zone; pass an aware datetime, e.g. '
                         'django.utils.timezone.now() + timedelta(days=3).' % (when,))
    if when <= timezone.now():
        raise ValueError('delay_until %s is not in the future (now is %s).'
                         % (when.isoformat(), timezone.now().isoformat()))


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
    for name in ('start_running', 'end_running'):
        value = fields.get(name)
        if value is not None and (not isinstance(value, dt.datetime) or timezone.is_naive(value)):
            raise ValueError('%s must be an aware datetime; got %r.' % (name, value))
    info = describe_callable(the_callable, pk_override=pk_override)
    task = Task(label=label or dotted_path(info), schedule=schedule,
                _func_info=json.dumps(info, sort_keys=True), **fields)
    task.userdata = userdata
    return task


def taskinfo_with_label(label):
    """Return the stored function info of the newest task labelled `label`."""
    task = Task.objects.filter(label=label).order_by('-created_at', '-pk').first()
    if task is None:
        raise Task.DoesNotExist('No Sisy task is labelled %r.' % (label,))
    return task.funcinfo
