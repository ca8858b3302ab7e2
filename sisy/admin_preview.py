"""The task form's live schedule preview: what a schedule means and when it runs next.

The form shows the next runs of the task as saved; as the operator types,
sisy/static/sisy/schedule_preview.js asks the preview endpoint what they would
become. Times are shown in settings.TIME_ZONE, the zone schedules are read in,
with the zone's abbreviation so daylight-saving changes are visible.
"""

import django
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from sisy.describe import describe, dst_notes, local_time
from sisy.models import Task
from sisy.schedule import InvalidSchedule

try:
    from django.urls import re_path
except ImportError:  # Django 1.11
    from django.conf.urls import url as re_path

PREVIEW_RUNS = 5
# The form fields the live schedule preview reads (sisy/static/sisy/schedule_preview.js).
PREVIEWED_FIELDS = ('schedule', 'start_running', 'end_running', 'wait_for_schedule',
                    'iterations')
NO_VALID_SCHEDULE = 'None: the schedule is not valid.'
# Django 2.1 added the view permission and permission-checked actions.
HAS_VIEW_PERMISSION = django.VERSION >= (2, 1)


def local(when):
    """A datetime as an operator reads it: local time with the zone's abbreviation."""
    return local_time(when, timezone.get_default_timezone())


class SchedulePreviewMixin:
    """A task admin's schedule preview: its URL, its JSON view and the runs the form shows."""

    def get_urls(self):
        opts = self.model._meta
        preview = re_path(r'^schedule-preview/$',
                          self.admin_site.admin_view(self.schedule_preview_view),
                          name='%s_%s_schedule_preview' % (opts.app_label, opts.model_name))
        return [preview] + super().get_urls()

    def upcoming_runs(self, task):
        """The next runs and their daylight-saving notes; the preview script updates them."""
        try:
            times, notes = _next_runs(task, timezone.now())
        except InvalidSchedule:
            content = format_html('<p>{}</p>', NO_VALID_SCHEDULE)
        except (ValueError, ArithmeticError) as error:
            content = format_html('<p>{}</p>', _cannot_work_out(error))
        else:
            content = _runs_html(task, times, notes)
        url = reverse('%s:%s_%s_schedule_preview' % (
            self.admin_site.name, Task._meta.app_label, Task._meta.model_name))
        if task.pk is not None:
            url += '?task=%d' % task.pk
        return format_html(
            '<div class="sisy-preview-runs" aria-live="polite" data-preview-url="{}">{}</div>',
            url, content)
    upcoming_runs.short_description = 'next %d runs' % PREVIEW_RUNS

    def has_preview_permission(self, request, task=None):
        """Who may see a task form: view or change (Django 2.1+: view covers both), or add."""
        if HAS_VIEW_PERMISSION:
            seen = self.has_view_permission(request, task)
        else:
            seen = self.has_change_permission(request, task)
        return seen or (task is None and self.has_add_permission(request))

    def preview_now(self):
        """The time the preview counts from (tests replace it)."""
        return timezone.now()

    def schedule_preview_view(self, request):
        """JSON: the schedule's meaning, next runs and DST notes, or the form's error.

        GET parameters are the form's timing fields: ``schedule``, ``start_running``
        and ``end_running`` (``date time``, or ``_0`` and ``_1`` as the form sends them),
        ``wait_for_schedule`` and ``iterations``; those not given keep their values.
        With ``task`` (the primary key of the task being edited) the preview is of
        that task with these values, as saving the form would leave it; without,
        of a new task. Answers ``{"valid": true, "meaning", "next_runs", "notes"}``
        (and ``"no_runs"``, why, when there are none) or ``{"valid": false, "error",
        "field"}`` (and ``"meaning"`` when the error is not the schedule's), never a
        server error.
        """
        if request.method not in ('GET', 'HEAD'):
            return HttpResponseNotAllowed(['GET', 'HEAD'])
        if not self.has_preview_permission(request):
            raise PermissionDenied
        task = self._previewed_base(request)
        form = self.get_form(request)()
        try:
            task = _previewed_task(form, request.GET, task)
        except _FieldError as error:
            answer = {'valid': False, 'error': error.message, 'field': error.field}
            if error.field != 'schedule':  # then the schedule is cleaned, and may still be bad
                try:
                    answer['meaning'] = describe(task.schedule)
                except InvalidSchedule as bad:
                    answer.update(error=str(bad), field='schedule')
            return JsonResponse(answer)
        now = self.preview_now()
        meaning = describe(task.schedule)
        try:
            times, notes = _next_runs(task, now)
        except (ValueError, ArithmeticError) as error:  # croniter's errors are ValueErrors
            return JsonResponse({'valid': False, 'field': '', 'meaning': meaning,
                                 'error': _cannot_work_out(error)})
        answer = {'valid': True, 'meaning': meaning,
                  'next_runs': [local(when) for when in times], 'notes': notes}
        if not times:
            answer['no_runs'] = _no_runs(task)
        return JsonResponse(answer)

    def _previewed_base(self, request):
        """The task named by the ``task`` parameter, if the user may see it; else a new one."""
        pk = request.GET.get('task', '')
        if not pk.isdigit() or int(pk) >= 2 ** 31:  # Task's pk is an AutoField
            return Task()
        task = self.get_queryset(request).filter(pk=int(pk)).first()
        if task is None or not self.has_preview_permission(request, task):
            return Task()
        return task


class _FieldError(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def _previewed_task(form, data, task):
    """`task`, unsaved, with the timing fields in `data` cleaned as `form` cleans them.

    Raises _FieldError with the first field's message, in the form's words.
    """
    for name in PREVIEWED_FIELDS:
        field = form.fields.get(name)
        if field is None:
            continue
        try:
            if name == 'wait_for_schedule':
                if name in data:
                    task.wait_for_schedule = data[name].strip().lower() not in (
                        '', '0', 'false', 'off', 'no')
                continue
            if name in ('start_running', 'end_running') and name in data:
                raw = (data[name].strip().split(None, 1) + ['', ''])[:2]  # 'date time'
            elif name == 'schedule' or not field.widget.value_omitted_from_data(data, {}, name):
                raw = field.widget.value_from_datadict(data, {}, name)
            else:
                continue  # not given: as the task has it
            setattr(task, name, field.clean(raw))
        except ValidationError as error:
            raise _FieldError(name, ' '.join(error.messages))
    others = [field.name for field in Task._meta.fields if field.name not in PREVIEWED_FIELDS]
    try:
        task.full_clean(exclude=others, validate_unique=False)
    except ValidationError as error:
        problems = getattr(error, 'message_dict', {'__all__': error.messages})
        name = next((name for name in PREVIEWED_FIELDS if name in problems), None)
        name = name or sorted(problems)[0]
        raise _FieldError(name, ' '.join(problems[name]))
    return task


def _next_runs(task, now):
    """The task's next PREVIEW_RUNS runs from `now`, and their daylight-saving notes."""
    times = task.planned_runs(now, PREVIEW_RUNS)
    # From when a task's planned runs count: now, or its later start.
    after = max(now, task.start_running) if task.start_running else now
    return times, dst_notes(task.get_schedule(), times, timezone.get_default_timezone(),
                            after=after)


def _cannot_work_out(error):
    return 'Cannot work out the next runs: %s.' % (error or type(error).__name__)


def _no_runs(task):
    """Why a task has no next runs."""
    if not task.enabled:
        return 'None: the task is disabled.'
    return 'None: the task has finished, or ends before its next run.'


def _runs_html(task, times, notes):
    if not times:
        runs = format_html('<p>{}</p>', _no_runs(task))
    else:
        runs = format_html('<ol class="sisy-upcoming">{}</ol>',
                           format_html_join('', '<li>{}</li>', ((local(t),) for t in times)))
    if notes:
        runs += format_html('<ul class="sisy-dst-notes">{}</ul>',
                            format_html_join('', '<li>{}</li>', ((note,) for note in notes)))
    return runs
