"""The operator's view: tasks with their schedules in plain words, and their run history.

The two ModelAdmins and their actions; Django's admin autodiscovery imports this
module, which registers them. The task form is in admin_forms.py, the live
schedule preview in admin_preview.py, hand-off jobs in words and "Run again"
in admin_jobs.py.
"""

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from sisy import admin_jobs, dispatch, health, ledger, lifecycle
from sisy.admin_forms import TaskForm
from sisy.admin_preview import HAS_VIEW_PERMISSION, SchedulePreviewMixin, local
from sisy.admin_preview import PREVIEW_RUNS  # noqa: F401 (importable from here, as before)
from sisy.describe import describe
from sisy.models import PUBLIC_FIELDS, Task, TaskRun
from sisy.schedule import InvalidSchedule

LEDGER_LINES = 20


def _permission_checked(action, permission='change'):
    """Allow the action only to users with the admin's has_<permission>_permission.

    Django 2.1+ hides it from others (allowed_permissions); the check inside
    covers older versions, which do not.
    """
    def checked(model_admin, request, queryset):
        if not getattr(model_admin, 'has_%s_permission' % permission)(request):
            raise PermissionDenied
        return action(model_admin, request, queryset)
    checked.__name__ = action.__name__
    checked.short_description = action.short_description
    checked.allowed_permissions = (permission,)
    return checked


def _stop_runs(model_admin, request, runs):
    """Ask the workers of the running ones of `runs` to stop them, and say what happens."""
    runs = list(runs.values_list('pk', 'task_label', 'status', 'stop_requested'))
    stopping = lifecycle.request_stop(pk for pk, _, status, _ in runs if status == TaskRun.RUNNING)
    if stopping:
        model_admin.message_user(
            request, 'Asked the workers to stop %d running run(s): each stops at its worker\'s '
                     'next lease renewal and is recorded as "stopped".' % stopping)
    already = ['%s (run %s)' % (label, pk) for pk, label, status, requested in runs
               if status == TaskRun.RUNNING and requested]
    if already:
        model_admin.message_user(request, 'Already asked to stop: %s.' % ', '.join(already),
                                 messages.WARNING)
    idle = ['%s (run %s, %s)' % (label, pk, status) for pk, label, status, _ in runs
            if status != TaskRun.RUNNING]
    if idle:
        model_admin.message_user(request, 'Not running, so not stopped: %s.' % ', '.join(idle),
                                 messages.WARNING)
    return stopping


@admin.register(Task)
class TaskAdmin(SchedulePreviewMixin, admin.ModelAdmin):
    form = TaskForm
    list_display = ('label', 'schedule', 'schedule_meaning', 'next_run_local',
                    'last_run_local', 'outcome', 'enabled')
    list_filter = ('enabled', 'last_outcome', 'running', 'allow_overlap')
    search_fields = ('label', 'schedule', '_func_info')
    actions = ['run_now', 'enable_tasks', 'disable_tasks', 'stop_runs']
    readonly_fields = ('meaning', 'upcoming_runs', 'next_run_local', 'last_run_local',
                       'outcome', 'running', 'disabled_reason', 'run_history', 'slot_ledger',
                       'created_at',
                       'modified_at')

    def get_fieldsets(self, request, obj=None):
        """The form's sections; a public field placed in none of them gets a section of its own."""
        fieldsets = [
            (None, {'fields': ('label', 'function', 'instance_pk', 'enabled')}),
            # The meaning and next runs follow the schedule as it is typed (schedule_preview).
            ('Schedule', {'fields': (
                'schedule', 'meaning', 'upcoming_runs', 'start_running', 'end_running',
                'wait_for_schedule', 'iterations', 'allow_overlap')}),
            ('Time limit and retries', {'fields': ('timeout', 'retries', 'retry_delay')}),
            ('Queue', {'fields': ('queue_name', 'priority')}),
        ]
        placed = {name for _, section in fieldsets for name in section['fields']}
        unplaced = tuple(name for name in PUBLIC_FIELDS if name not in placed)
        if unplaced:
            fieldsets.append(('More', {'fields': unplaced}))
        if obj is not None:
            fieldsets.append(('Status', {'fields': (
                'last_run_local', 'outcome', 'running', 'disabled_reason', 'run_history',
                'slot_ledger', 'created_at', 'modified_at')}))
        fieldsets.append(('User data', {'fields': ('userdata',), 'classes': ('collapse',)}))
        return fieldsets

    def get_queryset(self, request):
        return super().get_queryset(request).defer('_extra_data')

    def changelist_view(self, request, extra_context=None):
        """The task list, with the scheduler's health in a banner on top (two queries)."""
        if request.method == 'GET' and IS_POPUP_VAR not in request.GET:
            extra_context = dict(extra_context or {},
                                 sisy_health=health.banner(timezone.now()))
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.finished_at is not None:
            self.message_user(request, 'This task has no run left before its end, so it is '
                                       'finished and will be deleted once its runs are done.',
                              messages.WARNING)
        if getattr(form, 'overridden', None):
            self.message_user(request, 'Sisy changed this task after the form was shown, and '
                                       'your values were saved over its: %s.'
                              % '; '.join(form.overridden), messages.WARNING)

    # -- columns and read-only fields ------------------------------------------------

    def schedule_meaning(self, task):
        try:
            return describe(task.schedule)
        except InvalidSchedule as error:
            return 'invalid: %s' % error
    schedule_meaning.short_description = 'meaning'

    def meaning(self, task):
        """The schedule in words on the form, where the preview script keeps it up to date."""
        return format_html('<span class="sisy-preview-meaning" aria-live="polite">{}</span>',
                           self.schedule_meaning(task))
    meaning.short_description = 'meaning'

    def next_run_local(self, task):
        if task.next_run is None:
            return 'finished' if task.enabled else '-'
        return local(task.next_run) if task.enabled else 'disabled'
    next_run_local.short_description = 'next run'
    next_run_local.admin_order_field = 'next_run'

    def last_run_local(self, task):
        return local(task.last_run)
    last_run_local.short_description = 'last run'
    last_run_local.admin_order_field = 'last_run'

    def outcome(self, task):
        if not task.last_outcome:
            return '-'
        return format_html('<a href="{}">{}</a>', self._history_url(task), task.last_outcome)
    outcome.short_description = 'last outcome'
    outcome.admin_order_field = 'last_outcome'

    def run_history(self, task):
        runs = TaskRun.objects.filter(task=task)
        return format_html('<a href="{}">{} run(s), {} with errors</a>', self._history_url(task),
                           runs.count(), runs.filter(status=TaskRun.ERROR).count())
    run_history.short_description = 'run history'

    def slot_ledger(self, task):
        lines = ledger.entries(task, LEDGER_LINES)
        if not lines:
            return 'Every recorded slot started on time.'
        return format_html('<ul class="sisy-ledger">{}</ul>',
                           format_html_join('', '<li>{}</li>', ((text,) for _, text in lines)))
    slot_ledger.short_description = 'slots that did not start on time'

    def _history_url(self, task):
        return '%s?task__id__exact=%s' % (reverse('admin:sisy_taskrun_changelist'), task.pk)

    # -- actions ---------------------------------------------------------------------

    def run_now(self, request, queryset):
        now = timezone.now()
        runnable = queryset.filter(enabled=True, next_run__isnull=False)
        # Read before the claim, which marks the tasks it hands over running.
        busy = Task.objects.filter(pk__in=list(runnable.filter(
            running=True, allow_overlap=False).values_list('pk', flat=True)))
        free = list(runnable.exclude(pk__in=busy).values_list('label', flat=True))
        skipped = queryset.exclude(pk__in=runnable.values('pk'))
        dispatch.run_now(queryset, now)
        if free:
            self.message_user(request, 'Handed to a worker now (a worker must be running): '
                                       '%s.' % ', '.join(free))
        if busy:
            self.message_user(request, 'Still running, so their next run starts after the '
                                       'current one ends: %s.' % _labels(busy), messages.WARNING)
        if skipped:
            self.message_user(request, 'Not run because disabled or finished: %s.'
                              % _labels(skipped), messages.WARNING)
    run_now.short_description = 'Run selected tasks now'

    def enable_tasks(self, request, queryset):
        tasks = list(queryset.filter(enabled=False))
        for task in tasks:
            task.enabled = True
            task.save()  # clears disabled_reason and works out the next run from now
        self.message_user(request, 'Enabled %d task(s).' % len(tasks))
        ended = [task.label for task in tasks if task.finished_at is not None]
        if ended:
            self.message_user(request, 'No run left before their end, so finished and to be '
                                       'deleted: %s.' % ', '.join(ended), messages.WARNING)
    enable_tasks.short_description = 'Enable selected tasks'

    def disable_tasks(self, request, queryset):
        tasks = list(queryset.filter(enabled=True))
        for task in tasks:
            task.enabled = False
            task.save()
        self.message_user(request, 'Disabled %d task(s); a run under way finishes normally.'
                          % len(tasks))
    disable_tasks.short_description = 'Disable selected tasks'

    def stop_runs(self, request, queryset):
        runs = TaskRun.objects.filter(task__in=queryset, status=TaskRun.RUNNING)
        idle = queryset.exclude(pk__in=runs.values('task_id'))
        if runs.exists():
            _stop_runs(self, request, runs)
        if idle:
            self.message_user(request, 'No running run, so nothing to stop: %s.'
                              % _labels(idle), messages.WARNING)
    stop_runs.short_description = 'Stop running runs of selected tasks'

    run_now = _permission_checked(run_now)
    enable_tasks = _permission_checked(enable_tasks)
    disable_tasks = _permission_checked(disable_tasks)
    stop_runs = _permission_checked(stop_runs)


def _labels(queryset, limit=10):
    labels = list(queryset.values_list('label', flat=True)[:limit + 1])
    more = ' and others' if len(labels) > limit else ''
    return ', '.join(labels[:limit]) + more


class TaskLabelFilter(admin.SimpleListFilter):
    """Runs by their task's label, typed in; the labels are listed only when they are few.

    Listing every task would make each page of the history grow with the task
    table. A label also finds the runs of one-off jobs whose tasks are gone, and
    a hand-off job's runs by its function's dotted path.
    """

    title = 'task label'
    parameter_name = 'task_label'
    template = 'admin/sisy/taskrun/label_filter.html'
    LISTED = 20

    def lookups(self, request, model_admin):
        labels = list(Task.objects.order_by('label').values_list('label', flat=True)
                      .distinct()[:self.LISTED + 1])
        return [] if len(labels) > self.LISTED else [(label, label) for label in labels]

    def has_output(self):
        return True  # the text box, even with no label listed

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(task_label=self.value())
        return queryset

    def choices(self, changelist):
        # The box's form keeps the page's other filters and search, as the search box does.
        self.kept = sorted((name, value) for name, value in changelist.params.items()
                           if name not in (self.parameter_name, 'p'))
        return super().choices(changelist)


class KindFilter(admin.SimpleListFilter):
    """Hand-off jobs (sisy.tasks) apart from the runs of tasks."""

    title = 'kind'
    parameter_name = 'kind'

    def lookups(self, request, model_admin):
        return [('job', 'hand-off jobs'), ('task', 'task runs')]

    def queryset(self, request, queryset):
        if self.value() == 'job':
            return queryset.exclude(function='')
        if self.value() == 'task':
            return queryset.filter(function='')
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Runs by queue, listed from SISY_QUEUES (no query); shown when there are several."""

    title = 'queue'
    parameter_name = 'queue'

    def lookups(self, request, model_admin):
        names = health.listed_queues()
        if self.value() and self.value() not in names:
            names.append(self.value())  # a queue left out of SISY_QUEUES, from a link
        return [(name, name) for name in names]

    def has_output(self):
        return len(self.lookup_choices) > 1

    def queryset(self, request, queryset):
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


class JobFilter(admin.SimpleListFilter):
    """The attempts of one hand-off job, as a job's link lists them; shown only then."""

    title = 'job'
    parameter_name = 'job'

    def lookups(self, request, model_admin):
        return [(self.value(), 'job %s' % self.value())] if self.value() else []

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            job_id = int(self.value())
        except ValueError:
            return queryset.none()
        return queryset.exclude(function='').filter(
            Q(pk=job_id, first_attempt=None) | Q(first_attempt=job_id))


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    """Read-only: runs are written by Sisy, and deleting an active one would block its task.

    What an operator does here is ask for running runs to be stopped, and have
    finished hand-off jobs run again; both need the permission to change tasks.
    A hand-off job's row shows its function and arguments, and its page the
    job's id, options and return value.
    """

    list_display = ('scheduled_local', 'task_link', 'arguments_line', 'attempt', 'queue_name',
                    'priority', 'status', 'stop_requested', 'started_local', 'duration_text',
                    'host', 'pid', 'outcome_line')
    list_filter = ('status', KindFilter, QueueFilter, TaskLabelFilter, JobFilter)
    search_fields = ('task_label', 'error', 'host')
    COMMON_FIELDS = ('attempt', 'status', 'stop_requested', 'queue_name', 'priority',
                     'scheduled_local', 'started_local', 'finished_local', 'duration_text',
                     'host', 'pid')
    TASK_FIELDS = ('task_link', 'task_label') + COMMON_FIELDS + ('error_text',)
    JOB_FIELDS = (('job_link', 'function_path', 'arguments_text', 'options_text')
                  + COMMON_FIELDS + ('result_text', 'error_text'))
    readonly_fields = tuple(dict.fromkeys(TASK_FIELDS + JOB_FIELDS))
    actions = ['stop_runs', 'run_again']

    def get_fields(self, request, obj=None):
        return self.JOB_FIELDS if obj is not None and obj.is_job else self.TASK_FIELDS

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    if HAS_VIEW_PERMISSION:
        def has_change_permission(self, request, obj=None):
            return False

    def has_stop_permission(self, request):
        """Stopping runs and running jobs again: the permission to change tasks."""
        opts = Task._meta
        return request.user.has_perm('%s.%s' % (
            opts.app_label, get_permission_codename('change', opts)))

    def has_run_again_permission(self, request):
        return self.has_stop_permission(request)

    def stop_runs(self, request, queryset):
        _stop_runs(self, request, queryset)
    stop_runs.short_description = 'Stop selected runs'
    stop_runs = _permission_checked(stop_runs, 'stop')

    def run_again(self, request, queryset):
        admin_jobs.enqueue_again(self, request, queryset)
    run_again.short_description = 'Run selected hand-off jobs again'
    run_again = _permission_checked(run_again, 'run_again')

    def scheduled_local(self, run):
        return local(run.scheduled_for)
    scheduled_local.short_description = 'scheduled for'
    scheduled_local.admin_order_field = 'scheduled_for'

    def started_local(self, run):
        return local(run.started_at)
    started_local.short_description = 'started'
    started_local.admin_order_field = 'started_at'

    def finished_local(self, run):
        return local(run.finished_at)
    finished_local.short_description = 'finished'

    def duration_text(self, run):
        return '-' if run.duration is None else '%.3f s' % run.duration
    duration_text.short_description = 'duration'
    duration_text.admin_order_field = 'duration'

    def task_link(self, run):
        """The task's label, a link to it; a hand-off job's function, with the job's id."""
        if run.is_job:
            return format_html('{} <a href="{}" class="sisy-job">job {}</a>', run.task_label,
                               admin_jobs.job_url(run.job_id), run.job_id)
        if run.task_id is None:
            return '%s (deleted)' % run.task_label
        return format_html('<a href="{}">{}</a>',
                           reverse('admin:sisy_task_change', args=[run.task_id]), run.task_label)
    task_link.short_description = 'task or job'
    task_link.admin_order_field = 'task_label'

    def arguments_line(self, run):
        return admin_jobs.call_text(run, width=80) if run.is_job else ''
    arguments_line.short_description = 'call'

    def outcome_line(self, run):
        """What a job returned, or the last line of the error."""
        if run.is_job and run.return_value:
            return admin_jobs.shortened('returned %s' % admin_jobs.returned_text(run), 120)
        lines = run.error.strip().splitlines()
        return lines[-1][:120] if lines else ''
    outcome_line.short_description = 'result or error'

    def error_text(self, run):
        return format_html('<pre class="sisy-error">{}</pre>', run.error) if run.error else '-'
    error_text.short_description = 'error'

    # -- a hand-off job's page ---------------------------------------------------------

    def job_link(self, run):
        attempts = TaskRun.objects.exclude(function='').filter(
            Q(pk=run.job_id, first_attempt=None) | Q(first_attempt=run.job_id)).count()
        return format_html('<a href="{}">job {}</a>, {} attempt(s) so far',
                           admin_jobs.job_url(run.job_id), run.job_id, attempts)
    job_link.short_description = 'job'

    def function_path(self, run):
        return run.function.replace(':', '.')
    function_path.short_description = 'function'

    def arguments_text(self, run):
        return format_html('<pre class="sisy-call">{}</pre>', admin_jobs.call_text(run))
    arguments_text.short_description = 'call'

    def options_text(self, run):
        return admin_jobs.options_text(run)
    options_text.short_description = 'options'

    def result_text(self, run):
        if not run.return_value:
            return '-'
        return format_html('<pre class="sisy-result">{}</pre>',
                           admin_jobs.returned_text(run, width=80))
    result_text.short_description = 'returned'
