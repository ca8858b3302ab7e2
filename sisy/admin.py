"""The operator's view: tasks with their schedules in plain words, and their run history.

Times are shown in settings.TIME_ZONE, the zone schedules are read in, with
the zone's abbreviation so daylight-saving changes are visible.
"""

import json

import django
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from sisy import dispatch
from sisy.callables import CallableNotFound, describe_callable, dotted_path, load_callable
from sisy.describe import describe, local_time
from sisy.models import Task, TaskRun, encode_userdata
from sisy.schedule import InvalidSchedule

PREVIEW_RUNS = 5
# Django 2.1 added the view permission and permission-checked actions.
HAS_VIEW_PERMISSION = django.VERSION >= (2, 1)


def local(when):
    """A datetime as an operator reads it: local time with the zone's abbreviation."""
    return local_time(when, timezone.get_default_timezone())


class TaskForm(forms.ModelForm):
    """The task form, plus the task function given as a dotted path (and model row)."""

    function = forms.CharField(
        max_length=500,
        help_text='Dotted path of the function to run; it takes one parameter named '
                  '"message". (Example: "myapp.tasks.send_digest", or for a model '
                  'method "myapp.models.Report.refresh" with the primary key below.)')
    instance_pk = forms.CharField(
        label='Instance primary key', required=False, max_length=255,
        help_text='Only for an instance method of a model: the primary key of the row '
                  'to call it on. (Example: 42, or a UUID.) Leave blank otherwise.')
    userdata = forms.CharField(
        required=False, widget=forms.Textarea(attrs={'rows': 4}),
        help_text='JSON object kept with the task; the function can read and change it '
                  'as message["task"].userdata. (Example: {"recipients": ["ops@example.com"]})')

    class Meta:
        model = Task
        fields = ('label', 'schedule', 'enabled', 'start_running', 'end_running',
                  'wait_for_schedule', 'iterations', 'allow_overlap')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields['label'].required = False
        self.fields['label'].help_text = ('Any name you like. (Example: "nightly-digest"; '
                                          'blank: the function\'s dotted path.)')
        task = self.instance
        if task.pk is not None:
            try:
                info = task.funcinfo
                self.initial['function'] = dotted_path(info)
                self.initial['instance_pk'] = info.get('model_pk', '')
            except (ValueError, KeyError):
                pass  # shown as empty; the operator can give the function again
            try:
                self.initial['userdata'] = json.dumps(task.userdata, indent=2, sort_keys=True)
            except ValueError:
                self.initial['userdata'] = task._extra_data

    def clean_userdata(self):
        text = self.cleaned_data['userdata'].strip() or '{}'
        try:
            data = json.loads(text)
            encode_userdata(data)
        except ValueError as error:
            raise forms.ValidationError('%s is not a JSON object: %s. (Example: {"key": "value"})'
                                        % (text[:80], error))
        return data

    def clean(self):
        cleaned = super().clean()
        path = (cleaned.get('function') or '').strip()
        if not cleaned.get('label') and path:
            cleaned['label'] = path
        if path and (self.instance.pk is None or
                     {'function', 'instance_pk'} & set(self.changed_data)):
            self._set_function(path, cleaned.get('instance_pk', '').strip() or None)
        if 'userdata' in cleaned and 'userdata' in self.changed_data:
            self.instance.userdata = cleaned['userdata']
        return cleaned

    def _set_function(self, path, pk):
        try:
            info = describe_callable(path, pk_override=pk)
            if info['kind'] == 'method':
                load_callable(info)  # the row must exist now, or the task would be disabled
        except CallableNotFound as error:
            self.add_error('instance_pk', str(error))
        except ValueError as error:
            self.add_error('instance_pk' if pk and 'pk_override' in str(error) else 'function',
                           str(error))
        else:
            self.instance._func_info = json.dumps(info, sort_keys=True)


def _check_change_permission(action):
    """Actions change tasks, so they need the change permission (Django < 2.1 too)."""
    def checked(model_admin, request, queryset):
        if not model_admin.has_change_permission(request):
            raise PermissionDenied
        return action(model_admin, request, queryset)
    checked.__name__ = action.__name__
    checked.short_description = action.short_description
    checked.allowed_permissions = ('change',)
    return checked


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskForm
    list_display = ('label', 'schedule', 'schedule_meaning', 'next_run_local',
                    'last_run_local', 'outcome', 'enabled')
    list_filter = ('enabled', 'last_outcome', 'running', 'allow_overlap')
    search_fields = ('label', 'schedule', '_func_info')
    actions = ['run_now', 'enable_tasks', 'disable_tasks']
    readonly_fields = ('schedule_meaning', 'upcoming_runs', 'next_run_local', 'last_run_local',
                       'outcome', 'running', 'disabled_reason', 'run_history', 'created_at',
                       'modified_at')

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {'fields': ('label', 'function', 'instance_pk', 'enabled')}),
            ('Schedule', {'fields': ('schedule',) + (
                ('schedule_meaning', 'upcoming_runs') if obj else ()) + (
                'start_running', 'end_running', 'wait_for_schedule', 'iterations',
                'allow_overlap')}),
        ]
        if obj is not None:
            fieldsets.append(('Status', {'fields': (
                'last_run_local', 'outcome', 'running', 'disabled_reason', 'run_history',
                'created_at', 'modified_at')}))
        fieldsets.append(('User data', {'fields': ('userdata',), 'classes': ('collapse',)}))
        return fieldsets

    def get_queryset(self, request):
        return super().get_queryset(request).defer('_extra_data')

    # -- columns and read-only fields ------------------------------------------------

    def schedule_meaning(self, task):
        try:
            return describe(task.schedule)
        except InvalidSchedule as error:
            return 'invalid: %s' % error
    schedule_meaning.short_description = 'meaning'

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

    def upcoming_runs(self, task):
        try:
            times = task.planned_runs(timezone.now(), PREVIEW_RUNS)
        except InvalidSchedule as error:
            return str(error)
        if not times:
            return 'None: the task is disabled or has finished.'
        return format_html('<ol class="sisy-upcoming">{}</ol>',
                           format_html_join('', '<li>{}</li>', ((local(t),) for t in times)))
    upcoming_runs.short_description = 'next %d runs' % PREVIEW_RUNS

    def run_history(self, task):
        runs = TaskRun.objects.filter(task=task)
        return format_html('<a href="{}">{} run(s), {} with errors</a>', self._history_url(task),
                           runs.count(), runs.filter(status=TaskRun.ERROR).count())
    run_history.short_description = 'run history'

    def _history_url(self, task):
        return '%s?task__id__exact=%s' % (reverse('admin:sisy_taskrun_changelist'), task.pk)

    # -- actions ---------------------------------------------------------------------

    def run_now(self, request, queryset):
        now = timezone.now()
        runnable = queryset.filter(enabled=True, next_run__isnull=False)
        labels = list(runnable.values_list('label', flat=True))
        count = dispatch.run_now(queryset, now)
        skipped = queryset.exclude(pk__in=runnable.values('pk'))
        if count:
            try:
                when = 'at the next heartbeat tick, %s' % local(dispatch.next_tick_time(now))
            except (TypeError, ValueError):
                when = 'at the next heartbeat tick'
            self.message_user(request, 'Will run %s (a worker and sisy_heartbeat must be '
                                       'running): %s.' % (when, ', '.join(labels)))
        busy = runnable.filter(running=True, allow_overlap=False)
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
    enable_tasks.short_description = 'Enable selected tasks'

    def disable_tasks(self, request, queryset):
        tasks = list(queryset.filter(enabled=True))
        for task in tasks:
            task.enabled = False
            task.save()
        self.message_user(request, 'Disabled %d task(s); a run under way finishes normally.'
                          % len(tasks))
    disable_tasks.short_description = 'Disable selected tasks'

    run_now = _check_change_permission(run_now)
    enable_tasks = _check_change_permission(enable_tasks)
    disable_tasks = _check_change_permission(disable_tasks)


def _labels(queryset, limit=10):
    labels = list(queryset.values_list('label', flat=True)[:limit + 1])
    more = ' and others' if len(labels) > limit else ''
    return ', '.join(labels[:limit]) + more


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    """Read-only: runs are written by Sisy, and deleting an active one would block its task."""

    list_display = ('scheduled_local', 'task_link', 'status', 'started_local', 'duration_text',
                    'host', 'pid', 'error_line')
    list_filter = ('status', 'task')
    search_fields = ('task_label', 'error', 'host')
    fields = ('task_link', 'task_label', 'status', 'scheduled_local', 'started_local',
              'finished_local', 'duration_text', 'host', 'pid', 'error_text')
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    if HAS_VIEW_PERMISSION:
        def has_change_permission(self, request, obj=None):
            return False

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
        if run.task_id is None:
            return '%s (deleted)' % run.task_label
        return format_html('<a href="{}">{}</a>',
                           reverse('admin:sisy_task_change', args=[run.task_id]), run.task_label)
    task_link.short_description = 'task'
    task_link.admin_order_field = 'task_label'

    def error_line(self, run):
        lines = run.error.strip().splitlines()
        return lines[-1][:120] if lines else ''
    error_line.short_description = 'error'

    def error_text(self, run):
        return format_html('<pre class="sisy-error">{}</pre>', run.error) if run.error else '-'
    error_text.short_description = 'error'
