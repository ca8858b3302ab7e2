"""The admin: task list in plain words, creating tasks, actions, run history, permissions."""

import datetime as dt
import json
import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Q
from django.test import Client, override_settings
from django.utils import timezone

from sisy import admin as sisy_admin
from sisy.models import PUBLIC_FIELDS, Task, TaskRun, task_with_callable
from sisy.testing import run_due_tasks
from tests.testapp import jobs, tasks
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db
TASKS = '/admin/sisy/task/'
ADD = TASKS + 'add/'
RUNS = '/admin/sisy/taskrun/'


def client_for(*codenames, superuser=False, staff=True):
    user = User.objects.create_user('user-%s' % User.objects.count(), password='pw',
                                    is_staff=staff, is_superuser=superuser)
    # Django < 2.1 has no view permission; such codenames are simply not there.
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_():
    return client_for(superuser=True)


def make(label='nightly', schedule='30 0 * * *', **fields):
    task = task_with_callable(tasks.record, label=label, schedule=schedule, **fields)
    task.save()
    return Task.objects.get(pk=task.pk)


def form_data(**overrides):
    data = {'label': '', 'function': 'tests.testapp.tasks.record', 'instance_pk': '',
            'schedule': '*/5 * * * *', 'enabled': 'on', 'wait_for_schedule': 'on',
            'iterations': '0', 'timeout': '', 'retries': '0', 'retry_delay': '60', 'priority': '0', 'queue_name': 'default',
            'userdata': ''}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def text(response):
    return re.sub(r'\s+', ' ', response.content.decode())


def said(response):
    """The messages a page shows the operator, as plain text."""
    return ' | '.join(str(message) for message in response.context['messages'])


def rows(response):
    """The result table of a change list, without the filters beside it."""
    return text(response).split('id="result_list"', 1)[1].split('</table>', 1)[0]


def test_task_list_shows_schedule_in_words_and_local_times(admin_client_):
    task = make()
    page = text(admin_client_.get(TASKS))
    assert 'nightly' in page and '30 0 * * *' in page and 'at 00:30 every day' in page
    assert sisy_admin.local(task.next_run) in page
    assert re.search(r'00:30:00 (GMT|BST)', page)


def test_task_list_search_and_filters(admin_client_):
    make('nightly-digest')
    make('hourly-sync', '0 * * * *', enabled=False)
    page = rows(admin_client_.get(TASKS, {'q': 'digest'}))
    assert 'nightly-digest' in page and 'hourly-sync' not in page
    page = rows(admin_client_.get(TASKS, {'enabled__exact': '0'}))
    assert 'hourly-sync' in page and 'nightly-digest' not in page


def test_a_bad_schedule_is_refused_with_a_clear_message(admin_client_):
    response = admin_client_.post(ADD, form_data(schedule='99 * * * *'))
    assert response.status_code == 200
    errors = response.context['adminform'].form.errors
    assert "minute field '99' is not valid; it takes 0-59" in errors['schedule'][0]
    assert Task.objects.count() == 0


def test_creating_a_task_from_a_dotted_path(admin_client_):
    response = admin_client_.post(ADD, form_data(userdata='{"to": "ops"}'))
    assert response.status_code == 302
    task = Task.objects.get()
    assert task.label == 'tests.testapp.tasks.record'
    assert task.funcinfo == {'module': 'tests.testapp.tasks', 'qualname': 'record',
                             'kind': 'function'}
    assert task.userdata == {'to': 'ops'} and task.next_run is not None


@pytest.mark.parametrize('function, pk, field, message', [
    ('tests.testapp.tasks.nothing_here', '', 'function', "has no attribute 'nothing_here'"),
    ('tests.testapp.tasks.wrong_name', '', 'function', 'takes (msg)'),
    ('tests.testapp.models.Counter.bump', '', 'function', 'is an instance method of Counter'),
    ('tests.testapp.models.Counter.bump', '999', 'instance_pk', 'no longer exists'),
    ('tests.testapp.models.Counter.bump', 'abc', 'instance_pk', 'not a valid Counter primary key'),
    ('tests.testapp.tasks.record', '5', 'instance_pk', 'not an instance method'),
])
def test_function_errors_are_shown_on_the_field(admin_client_, function, pk, field, message):
    response = admin_client_.post(ADD, form_data(function=function, instance_pk=pk))
    assert response.status_code == 200
    errors = response.context['adminform'].form.errors
    assert message in ' '.join(errors[field])
    assert Task.objects.count() == 0


def test_creating_a_task_for_a_model_instance_method(admin_client_):
    counter = Counter.objects.create(name='c')
    response = admin_client_.post(ADD, form_data(
        label='bump', function='tests.testapp.models.Counter.bump', instance_pk=str(counter.pk)))
    assert response.status_code == 302
    assert Task.objects.get(label='bump').funcinfo['model_pk'] == counter.pk


def test_invalid_userdata_is_refused(admin_client_):
    response = admin_client_.post(ADD, form_data(userdata='[1, 2]'))
    assert 'is not a JSON object' in response.context['adminform'].form.errors['userdata'][0]


def test_userdata_nested_deeper_than_json_goes_is_refused_on_the_field(admin_client_):
    deep = '{"a": %s}' % ('[' * 5000 + ']' * 5000)
    response = admin_client_.post(ADD, form_data(userdata=deep))
    error = response.context['adminform'].form.errors['userdata'][0]
    assert 'is nested deeper than JSON can store' in error and '{"a": [[[' in error
    assert Task.objects.count() == 0


def test_change_page_previews_the_next_five_runs(admin_client_):
    task = make()
    page = text(admin_client_.get(TASKS + '%d/change/' % task.pk))
    listed = re.findall(r'<li>([^<]*)</li>', page.split('sisy-upcoming', 1)[1].split('</ol>')[0])
    assert len(listed) == 5
    assert all(' 00:30:00 ' in when for when in listed)
    assert listed[0] == sisy_admin.local(task.next_run)
    assert 'at 00:30 every day' in page
    assert 'tests.testapp.tasks.record' in page  # the function, ready to edit


def test_editing_keeps_the_function_and_retimes_the_task(admin_client_):
    task = make()
    data = form_data(label='nightly', schedule='0 6 * * mon-fri',
                     userdata=json.dumps(task.userdata))
    response = admin_client_.post(TASKS + '%d/change/' % task.pk, data)
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.schedule == '0 6 * * mon-fri'
    local = timezone.localtime(task.next_run)
    assert (local.hour, local.minute, local.weekday() < 5) == (6, 0, True)


def test_preview_respects_iterations_and_end(admin_client_):
    now = timezone.now()
    three = make('three', '0 * * * *', iterations=3)
    assert len(three.planned_runs(now, sisy_admin.PREVIEW_RUNS)) == 3
    ends = make('ends', '0 * * * *')
    ends.end_running = ends.next_run + dt.timedelta(hours=1, minutes=30)
    ends.save()
    assert len(ends.planned_runs(now, sisy_admin.PREVIEW_RUNS)) == 2
    off = make('off', enabled=False)
    assert off.planned_runs(now, sisy_admin.PREVIEW_RUNS) == []


# -- the live schedule preview (the form's script asks this view as the schedule is typed) --

PREVIEW = TASKS + 'schedule-preview/'


def preview(client, **params):
    response = client.get(PREVIEW, params)
    assert response.status_code == 200 and response['Content-Type'] == 'application/json'
    return response.json()


@pytest.fixture
def preview_at(monkeypatch):
    """Make the preview count from a given instant (the view's clock)."""
    def at(when):
        monkeypatch.setattr(sisy_admin.TaskAdmin, 'preview_now', lambda self: when)
    return at


def utc(*fields):
    return dt.datetime(*fields, tzinfo=dt.timezone.utc)


def test_preview_gives_the_meaning_and_next_five_runs(admin_client_, preview_at):
    preview_at(utc(2026, 6, 1, 12, 2, 30))
    assert preview(admin_client_, schedule='*/5 9-17 * * mon-fri') == {
        'valid': True, 'meaning': 'every 5 minutes from 09:00 to 17:55 on Monday to Friday',
        'next_runs': ['Mon 2026-06-01 13:05:00 BST', 'Mon 2026-06-01 13:10:00 BST',
                      'Mon 2026-06-01 13:15:00 BST', 'Mon 2026-06-01 13:20:00 BST',
                      'Mon 2026-06-01 13:25:00 BST'],
        'notes': []}


def test_preview_counts_start_end_iterations_and_wait(admin_client_):
    # The model refuses an end in the past by the real clock, so these dates are ahead of it.
    day = timezone.localtime().date() + dt.timedelta(days=30)

    def at(days, hour=6):
        naive = dt.datetime.combine(day + dt.timedelta(days=days), dt.time(hour))
        return sisy_admin.local(timezone.make_aware(naive))

    def runs(**params):
        return preview(admin_client_, schedule='0 6 * * *', **params)['next_runs']

    assert runs(start_running_0=day.isoformat(), start_running_1='00:00:00') == [
        at(0), at(1), at(2), at(3), at(4)]
    assert runs(start_running='%s 00:00' % day, iterations='2') == [at(0), at(1)]
    assert runs(start_running='%s 00:00' % day, end_running='%s 12:00' % (
        day + dt.timedelta(days=1)), wait_for_schedule='on') == [at(0), at(1)]
    assert runs(start_running='%s 07:00' % day, wait_for_schedule='')[:2] == [at(0, 7), at(1)]


def test_preview_refuses_a_bad_schedule_as_the_form_does(admin_client_):
    form_errors = admin_client_.post(ADD, form_data(schedule='99 * * * *')).context[
        'adminform'].form.errors['schedule']
    answer = preview(admin_client_, schedule='99 * * * *')
    assert answer == {'valid': False, 'error': form_errors[0], 'field': 'schedule'}
    assert "minute field '99' is not valid; it takes 0-59" in answer['error']


@pytest.mark.parametrize('params, field, says', [
    ({}, 'schedule', 'This field is required.'),
    ({'schedule': '   '}, 'schedule', 'This field is required.'),
    ({'schedule': '* * *'}, 'schedule', 'has 3 fields; expected 5 fields'),
    ({'schedule': '0 0 31 2 *'}, 'schedule', 'never matches a real date'),
    ({'schedule': '* ' * 200}, 'schedule', 'Ensure this value has at most'),
    ({'schedule': '\x00'}, 'schedule', ''),  # Django 2+: "Null characters are not allowed."
    ({'schedule': '\u00e9 * * * *'}, 'schedule', 'minute field'),
    ({'schedule': '* * * * *', 'start_running_0': '2030-01-01'}, 'start_running',
     'Enter a valid time.'),
    ({'schedule': '* * * * *', 'start_running': 'tomorrow'}, 'start_running',
     'Enter a valid date.'),
    ({'schedule': '* * * * *', 'start_running': '2026-03-29 01:30'}, 'start_running',
     "couldn't be interpreted in time zone Europe/London"),
    ({'schedule': '* * * * *', 'end_running': '2001-01-01 10:00'}, 'end_running',
     'is in the past'),
    ({'schedule': '* * * * *', 'start_running': '2031-01-01 10:00',
      'end_running': '2030-01-01 10:00'}, 'end_running', 'is not after start_running'),
    ({'schedule': '* * * * *', 'iterations': '-1'}, 'iterations', 'greater than or equal to 0'),
    ({'schedule': '* * * * *', 'iterations': 'many'}, 'iterations', 'Enter a whole number.'),
    ({'schedule': '* * * * *', 'start_running': '9999-12-31 23:59'}, '',
     'Cannot work out the next runs'),
])
def test_bad_preview_input_is_answered_never_a_server_error(admin_client_, params, field, says):
    answer = preview(admin_client_, **params)
    assert answer['valid'] is False and answer['field'] == field
    assert says in answer['error']


def test_preview_with_a_good_schedule_and_another_bad_field_keeps_the_meaning(admin_client_):
    assert preview(admin_client_, schedule='*/5 * * * *', iterations='many') == {
        'valid': False, 'field': 'iterations', 'error': 'Enter a whole number.',
        'meaning': 'every 5 minutes'}
    # A bad schedule is what the operator hears about first.
    answer = preview(admin_client_, schedule='99 * * * *', iterations='many')
    assert answer['field'] == 'schedule' and "minute field '99'" in answer['error']
    assert 'meaning' not in answer
    answer = preview(admin_client_, schedule='* * * * *', start_running='9999-12-31 23:59')
    assert answer['meaning'] == 'every minute' and answer['field'] == ''


def test_preview_says_why_there_are_no_runs(admin_client_):
    day = timezone.localtime().date() + dt.timedelta(days=30)
    answer = preview(admin_client_, schedule='0 6 * * *', start_running='%s 07:00' % day,
                     end_running='%s 08:00' % day)
    assert answer['valid'] and answer['next_runs'] == []
    assert answer['no_runs'] == 'None: the task has finished, or ends before its next run.'
    off = make('off', enabled=False)
    answer = preview(admin_client_, task=off.pk, schedule='0 6 * * *')
    assert (answer['next_runs'], answer['no_runs']) == ([], 'None: the task is disabled.')


def test_preview_notes_a_time_a_spring_forward_gap_moves(admin_client_, preview_at):
    preview_at(utc(2026, 3, 27, 12))  # Europe/London goes from 01:00 to 02:00 on 29 March
    answer = preview(admin_client_, schedule='30 1 * * *')
    assert answer['next_runs'][:3] == ['Sat 2026-03-28 01:30:00 GMT',
                                       'Sun 2026-03-29 02:00:00 BST',
                                       'Mon 2026-03-30 01:30:00 BST']
    assert answer['notes'] == ['01:30 does not exist on 29 March; runs at 02:00']


def test_preview_notes_a_time_that_happens_twice(admin_client_, preview_at):
    preview_at(utc(2026, 10, 23, 12))  # and from 02:00 back to 01:00 on 25 October
    answer = preview(admin_client_, schedule='30 1 * * *')
    assert answer['next_runs'][1:3] == ['Sun 2026-10-25 01:30:00 BST',
                                        'Mon 2026-10-26 01:30:00 GMT']
    assert answer['notes'] == ['01:30 happens twice on 25 October; runs once, at the first']
    answer = preview(admin_client_, schedule='*/30 * * * *', start_running='2026-10-25 00:10')
    assert answer['next_runs'][2:4] == ['Sun 2026-10-25 01:30:00 BST',
                                        'Sun 2026-10-25 01:00:00 GMT']
    assert answer['notes'] == ['01:00 to 01:59 happens twice on 25 October; runs in both']


def test_preview_of_a_task_being_edited_is_of_that_task(admin_client_, worker, soon):
    task = make('three', '* * * * *', iterations=3)
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)  # one iteration used: two left
    answer = preview(admin_client_, task=task.pk, schedule='* * * * *')
    assert len(answer['next_runs']) == 2
    assert answer['next_runs'][0] == sisy_admin.local(Task.objects.get(pk=task.pk).next_run)
    assert len(preview(admin_client_, task=task.pk, schedule='0 * * * *')['next_runs']) == 2
    for other in ('', 'x', '99999', str(2 ** 40), '-1'):
        assert len(preview(admin_client_, task=other, schedule='* * * * *')['next_runs']) == 5


def test_preview_needs_the_admin_and_a_task_permission():
    anonymous = Client()
    response = anonymous.get(PREVIEW, {'schedule': '* * * * *'})
    assert response.status_code == 302 and '/admin/login/' in response['Location']
    response = client_for('view_task', 'change_task', staff=False).get(PREVIEW)
    assert response.status_code == 302 and '/admin/login/' in response['Location']
    assert client_for().get(PREVIEW, {'schedule': '* * * * *'}).status_code == 403
    assert client_for('view_taskrun').get(PREVIEW).status_code == 403
    for codename in ('change_task', 'add_task') + (
            ('view_task',) if sisy_admin.HAS_VIEW_PERMISSION else ()):
        assert preview(client_for(codename), schedule='* * * * *')['valid'] is True
    assert client_for('change_task').post(PREVIEW, {'schedule': '* * * * *'}).status_code \
        == 405


def test_preview_of_a_task_the_user_may_not_see_is_of_a_new_task():
    task = make('three', '* * * * *', iterations=3)
    adder = client_for('add_task')
    assert len(preview(adder, task=task.pk, schedule='* * * * *')['next_runs']) == 5


def test_add_and_change_forms_have_the_live_preview(admin_client_):
    for url in (ADD, TASKS + '%d/change/' % make().pk):
        page = text(admin_client_.get(url))
        assert '/static/sisy/schedule_preview.js' in page
        assert re.search(r'<span class="sisy-preview-meaning" aria-live="polite">'
                         r'(every minute|at 00:30 every day)</span>', page)
        assert re.search(r'<div class="sisy-preview-runs" aria-live="polite" data-preview-url='
                         r'"/admin/sisy/task/schedule-preview/(\?task=\d+)?"><ol class="'
                         r'sisy-upcoming">(<li>[^<]+</li>){5}</ol></div>', page)


def test_change_form_notes_daylight_saving_in_its_preview(admin_client_, monkeypatch):
    task = make('gap', '30 1 * * *')
    moved = utc(2026, 3, 29, 1)  # 02:00 BST, standing in for 01:30
    Task.objects.filter(pk=task.pk).update(next_run=moved)
    monkeypatch.setattr(sisy_admin.timezone, 'now', lambda: utc(2026, 3, 28, 12))
    page = text(admin_client_.get(TASKS + '%d/change/' % task.pk))
    assert '<li>Sun 2026-03-29 02:00:00 BST</li>' in page
    assert ('<ul class="sisy-dst-notes"><li>01:30 does not exist on 29 March; runs at 02:00'
            '</li></ul>') in page


def test_run_now_action_makes_the_task_due_and_says_when(admin_client_):
    task = make()
    off = make('off', enabled=False)
    response = admin_client_.post(TASKS, {'action': 'run_now',
                                          '_selected_action': [task.pk, off.pk]}, follow=True)
    page = text(response)
    assert 'Handed to a worker now (a worker must be running): nightly.' in page
    assert 'Not run because disabled or finished: off' in page
    # Claimed at once: a run waits for a worker, and the slot is used.
    assert list(TaskRun.objects.filter(task=task).values_list('status', flat=True)) == ['pending']
    assert not TaskRun.objects.filter(task=off).exists()


def test_enable_and_disable_actions(admin_client_):
    task = make()
    admin_client_.post(TASKS, {'action': 'disable_tasks', '_selected_action': [task.pk]})
    task.refresh_from_db()
    assert not task.enabled
    Task.objects.filter(pk=task.pk).update(disabled_reason='Cannot load the task function',
                                           next_run=timezone.now() - dt.timedelta(days=3))
    admin_client_.post(TASKS, {'action': 'enable_tasks', '_selected_action': [task.pk]})
    task.refresh_from_db()
    assert task.enabled and task.disabled_reason == '' and task.next_run > timezone.now()


def test_enabling_a_task_whose_end_passed_says_it_is_finished(admin_client_):
    task = make(end_running=timezone.now() + dt.timedelta(days=7), enabled=False)
    Task.objects.filter(pk=task.pk).update(end_running=timezone.now() - dt.timedelta(days=1))
    response = admin_client_.post(TASKS, {'action': 'enable_tasks',
                                          '_selected_action': [task.pk]}, follow=True)
    assert 'No run left before their end, so finished and to be deleted: nightly.' in \
        said(response)
    assert Task.objects.get(pk=task.pk).finished_at is not None


def test_saving_a_task_with_no_run_before_its_end_warns_that_it_is_finished(admin_client_):
    task = make(end_running=timezone.now() + dt.timedelta(days=7))
    day = timezone.localtime() + dt.timedelta(days=21)
    response = send(admin_client_, task, open_form(admin_client_, task),
                    schedule='0 0 %d %d *' % (day.day, day.month))
    assert 'This task has no run left before its end, so it is finished' in said(response)
    assert Task.objects.get(pk=task.pk).finished_at is not None


def test_non_staff_users_are_refused():
    make()
    client = client_for('change_task', 'view_task', staff=False)
    for url in (TASKS, ADD, RUNS):
        response = client.get(url)
        assert response.status_code == 302 and '/login/' in response['Location']


def test_staff_without_permissions_see_nothing():
    make()
    client = client_for()
    assert client.get(TASKS).status_code == 403
    assert client.get(RUNS).status_code == 403


@pytest.mark.skipif(not sisy_admin.HAS_VIEW_PERMISSION, reason='Django < 2.1: no view permission')
def test_view_only_staff_can_look_but_not_act():
    task = make()
    before = task.next_run
    client = client_for('view_task', 'view_taskrun')
    page = text(client.get(TASKS))
    assert 'nightly' in page and 'run_now' not in page
    client.post(TASKS, {'action': 'run_now', '_selected_action': [task.pk]})
    task.refresh_from_db()
    assert task.next_run == before
    assert client.post(TASKS + '%d/change/' % task.pk, form_data()).status_code == 403


def test_run_history_is_browsable_by_task_and_read_only(admin_client_, worker, soon):
    task = make('flaky', '* * * * *')
    make('other', '* * * * *')
    Task.objects.update(next_run=soon)
    Task.objects.filter(pk=task.pk).update(
        _func_info=task_with_callable(tasks.explode)._func_info)
    worker.tick(soon)
    page = text(admin_client_.get(TASKS + '%d/change/' % task.pk))
    assert '1 run(s), 1 with errors' in page
    history = rows(admin_client_.get(RUNS, {'task__id__exact': task.pk}))
    assert 'flaky' in history and 'RuntimeError: boom from a test task' in history
    assert 'other' not in history  # the filter shows only this task's runs
    assert '>other<' not in history
    errors = rows(admin_client_.get(RUNS, {'status__exact': 'error'}))
    assert 'flaky' in errors and '>other<' not in errors
    run = TaskRun.objects.get(task=task)
    detail = admin_client_.get(RUNS + '%d/change/' % run.pk)
    assert 'Traceback' in text(detail)
    if sisy_admin.HAS_VIEW_PERMISSION:
        assert 'name="_save"' not in text(detail)
    assert admin_client_.get(RUNS + 'add/').status_code == 403
    assert admin_client_.post(RUNS + '%d/delete/' % run.pk, {'post': 'yes'}).status_code == 403
    assert TaskRun.objects.filter(pk=run.pk).exists()



def test_run_history_filters_by_task_label_even_of_deleted_tasks(admin_client_, worker, soon):
    make('report', '* * * * *')
    make('cleanup', '* * * * *')
    Task.objects.update(next_run=soon)
    worker.tick(soon)
    TaskRun.objects.create(task=None, task_label='report', scheduled_for=soon - dt.timedelta(
        days=1), status='ok')  # a run of an earlier task of that label, since deleted
    page = admin_client_.get(RUNS)
    assert 'By task label' in text(page)
    assert '?task_label=cleanup' in text(page)  # few labels: listed as links
    found = rows(admin_client_.get(RUNS, {'task_label': 'report'}))
    assert found.count('class="row') == 2 and 'cleanup' not in found
    assert '>report</a>' in found and 'report (deleted)' in found
    # The box keeps the other filters when a label is typed in.
    box = text(admin_client_.get(RUNS, {'status__exact': 'ok'}))
    assert '<input type="hidden" name="status__exact" value="ok">' in box


def test_the_run_history_page_does_not_grow_with_the_task_table(admin_client_, soon):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    info = task_with_callable(tasks.record)._func_info
    userdata = json.dumps({'notes': 'x' * 200})

    def add_tasks(count):
        first = Task.objects.count()
        Task.objects.bulk_create([
            Task(label='task-%d' % number, _func_info=info, _extra_data=userdata, next_run=soon)
            for number in range(first, first + count)])

    def history_page():
        with CaptureQueriesContext(connection) as captured:
            page = admin_client_.get(RUNS).content
        return len(page), len(captured.captured_queries)

    add_tasks(30)
    TaskRun.objects.create(task=Task.objects.first(), task_label='task-0', scheduled_for=soon)
    size, queries = history_page()
    add_tasks(2000)
    grown, more_queries = history_page()
    assert more_queries == queries
    assert abs(grown - size) < 200, (size, grown)

# -- editing what workers change: a form posted as a browser posts it ---------------------

class FormReader(HTMLParser):
    """The fields of a page's task form, as a browser would send them."""

    def __init__(self, form_id):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, []
        self._textarea = self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'form':
            self.inside = attrs.get('id') == self.form_id
        if not self.inside:
            return
        kind = attrs.get('type', 'text')
        if tag == 'input' and kind not in ('submit', 'button', 'file'):
            box = kind in ('checkbox', 'radio')
            if not box or 'checked' in attrs:
                self.fields.append([attrs['name'], attrs.get('value', 'on' if box else '')])
        elif tag == 'textarea':
            self._textarea = [attrs['name'], '']
            self.fields.append(self._textarea)
        elif tag == 'select':
            self._select = attrs['name']
        elif tag == 'option' and self._select and 'selected' in attrs:
            self.fields.append([self._select, attrs.get('value', '')])

    def handle_endtag(self, tag):
        if tag == 'form':
            self.inside = False
        elif tag == 'textarea' and self._textarea:
            # A browser drops the newline that opens a textarea.
            self._textarea[1] = self._textarea[1][1:] if self._textarea[1][:1] == '\n' \
                else self._textarea[1]
            self._textarea = None
        elif tag == 'select':
            self._select = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data


def shown_form(response):
    """The task form on a page, as {name: value}; a browser sends line breaks as CRLF."""
    reader = FormReader('task_form')
    reader.feed(response.content.decode())
    assert reader.fields, 'no task form on the page'
    return {name: value.replace('\r\n', '\n').replace('\n', '\r\n')
            for name, value in reader.fields}


def send(client, task, form, **changes):
    """Post `form` with the operator's `changes` (None unticks a box) to the change page."""
    data = dict(form, **{name: value for name, value in changes.items() if value is not None})
    for name in [name for name, value in changes.items() if value is None]:
        data.pop(name, None)
    return client.post(TASKS + '%d/change/' % task.pk, data, follow=True)


def open_form(client, task):
    return shown_form(client.get(TASKS + '%d/change/' % task.pk))


def test_a_stale_form_does_not_re_enable_a_task_sisy_disabled(admin_client_, worker, soon):
    counter = Counter.objects.create(name='gone soon')
    task = task_with_callable('tests.testapp.models.Counter.bump', label='bump',
                              pk_override=counter.pk)
    task.save()
    form = open_form(admin_client_, task)
    assert form['enabled'] == 'on' and form['initial-enabled'] == 'True'
    counter.delete()
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)  # the worker finds the row gone and disables the task
    reason = Task.objects.get(pk=task.pk).disabled_reason
    assert reason
    response = send(admin_client_, task, form, schedule='0 6 * * *')
    task.refresh_from_db()
    assert (task.schedule, task.enabled, task.disabled_reason) == ('0 6 * * *', False, reason)
    assert 'Sisy changed this task' not in said(response)  # the operator left "enabled" alone


def test_a_stale_form_does_not_restore_iterations_a_claim_used(admin_client_, worker, soon):
    task = make('five-times', '* * * * *', iterations=5)
    form = open_form(admin_client_, task)
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)
    after_tick = Task.objects.get(pk=task.pk)
    assert after_tick.iterations == 4
    send(admin_client_, task, form, label='renamed')
    task.refresh_from_db()
    assert (task.label, task.iterations, task.next_run) == \
        ('renamed', 4, after_tick.next_run)  # nor is the claimed slot handed back


def test_an_edit_over_what_sisy_changed_is_saved_with_a_warning(admin_client_, worker, soon):
    task = make('five-times', '* * * * *', iterations=5)
    form = open_form(admin_client_, task)
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)
    response = send(admin_client_, task, form, iterations='10')
    assert Task.objects.get(pk=task.pk).iterations == 10
    assert ('Sisy changed this task after the form was shown, and your values were saved '
            'over its: Iterations was 4.') in said(response)


def test_userdata_a_run_stored_survives_a_stale_form(admin_client_, worker, soon):
    task = make('counts', '* * * * *')
    Task.objects.filter(pk=task.pk).update(
        _func_info=task_with_callable(tasks.count_in_userdata)._func_info, next_run=soon)
    form = open_form(admin_client_, task)
    worker.tick(soon)
    assert Task.objects.get(pk=task.pk).userdata == {'count': 1}
    send(admin_client_, task, form, schedule='*/2 * * * *')
    task.refresh_from_db()
    assert (task.schedule, task.userdata) == ('*/2 * * * *', {'count': 1})


def test_userdata_edited_in_the_change_form_is_saved(admin_client_):
    task = make(userdata={'to': 'ops'})
    form = open_form(admin_client_, task)
    assert json.loads(form['userdata']) == {'to': 'ops'}
    response = send(admin_client_, task, form, userdata='{"to": "dev", "n": 2}')
    assert response.redirect_chain[-1][0] == TASKS
    assert Task.objects.get(pk=task.pk).userdata == {'to': 'dev', 'n': 2}


def test_edits_made_before_a_form_error_still_count(admin_client_):
    task = make()
    first = send(admin_client_, task, open_form(admin_client_, task),
                 iterations='7', schedule='99 * * * *')
    assert "minute field '99'" in first.context['adminform'].form.errors['schedule'][0]
    send(admin_client_, task, shown_form(first), schedule='0 6 * * *')
    task.refresh_from_db()
    assert (task.schedule, task.iterations) == ('0 6 * * *', 7)


def test_timeout_and_retries_are_on_the_form_with_examples(admin_client_):
    task = make()
    page = text(admin_client_.get(TASKS + '%d/change/' % task.pk))
    assert 'Time limit and retries' in page
    assert '(Example: 300. Blank: no limit.)' in page and '(Example: 3.)' in page
    send(admin_client_, task, open_form(admin_client_, task),
         timeout='30', retries='2', retry_delay='5')
    task.refresh_from_db()
    assert (task.timeout, task.retries, task.retry_delay) == (30, 2, 5)


@pytest.mark.parametrize('field, bad, says', [
    ('timeout', '-1', 'timeout must be a number of seconds greater than 0'),
    ('end_running_0', '2001-01-01', 'is in the past'),
    ('label', 'x' * 256, 'at most 255'),
    ('retry_delay', '1e12', 'retry_delay must be at most 31536000 seconds (365 days)'),
    ('timeout', '31536001', 'timeout must be at most 31536000 seconds'),
    ('retries', '2147483647', 'retries must be at most 2147483646'),
])
def test_bad_values_are_refused_on_the_field(admin_client_, field, bad, says):
    task = make()
    form = open_form(admin_client_, task)
    if field == 'end_running_0':
        form['end_running_1'] = '10:00:00'
    response = send(admin_client_, task, form, **{field: bad})
    errors = response.context['adminform'].form.errors
    assert says in ' '.join(errors[field.split('_0')[0]])
    assert Task.objects.get(pk=task.pk).label == 'nightly'


# -- stopping runs --------------------------------------------------------------------------

def run_of(task, status):
    return TaskRun.objects.create(task=task, task_label=task.label, status=status,
                                  scheduled_for=timezone.now())


def test_stop_selected_runs_stops_only_running_ones(admin_client_):
    task = make('hangs')
    running, done, waiting = (run_of(task, status) for status in ('running', 'ok', 'pending'))
    response = admin_client_.post(RUNS, {'action': 'stop_runs', '_selected_action': [
        running.pk, done.pk, waiting.pk]}, follow=True)
    assert list(TaskRun.objects.filter(stop_requested=True)) == [running]
    assert ("Asked the workers to stop 1 running run(s): each stops at its worker's next "
            'lease renewal and is recorded as "stopped".') in said(response)
    assert 'Not running, so not stopped: hangs (run %d, pending), hangs (run %d, ok).' % (
        waiting.pk, done.pk) in said(response)
    response = admin_client_.post(RUNS, {'action': 'stop_runs',
                                         '_selected_action': [running.pk]}, follow=True)
    assert said(response) == 'Already asked to stop: hangs (run %d).' % running.pk


def test_stop_running_runs_of_selected_tasks(admin_client_):
    hangs, idle = make('hangs'), make('idle')
    running, done = run_of(hangs, 'running'), run_of(hangs, 'error')
    response = admin_client_.post(TASKS, {'action': 'stop_runs',
                                          '_selected_action': [hangs.pk, idle.pk]}, follow=True)
    assert set(TaskRun.objects.filter(stop_requested=True)) == {running}
    assert 'Asked the workers to stop 1 running run(s)' in said(response)
    assert 'No running run, so nothing to stop: idle.' in said(response)


def test_the_run_list_shows_attempts_and_stop_requests(admin_client_):
    run = run_of(make('hangs'), 'running')
    TaskRun.objects.filter(pk=run.pk).update(attempt=3, stop_requested=True)
    page = text(admin_client_.get(RUNS))
    assert 'column-attempt' in page and 'column-stop_requested' in page
    assert '>3<' in rows(admin_client_.get(RUNS))


@pytest.mark.skipif(not sisy_admin.HAS_VIEW_PERMISSION, reason='Django < 2.1: no view permission')
def test_stopping_runs_needs_the_task_change_permission():
    run = run_of(make('hangs'), 'running')
    viewer = client_for('view_taskrun', 'view_task')
    assert 'stop_runs' not in text(viewer.get(RUNS))
    viewer.post(RUNS, {'action': 'stop_runs', '_selected_action': [run.pk]})
    viewer.post(TASKS, {'action': 'stop_runs', '_selected_action': [run.task_id]})
    assert not TaskRun.objects.get(pk=run.pk).stop_requested
    operator = client_for('view_taskrun', 'change_task')
    assert 'stop_runs' in text(operator.get(RUNS))
    operator.post(RUNS, {'action': 'stop_runs', '_selected_action': [run.pk]})
    assert TaskRun.objects.get(pk=run.pk).stop_requested


def test_every_public_field_of_a_task_is_on_its_admin_page(admin_client_, monkeypatch):
    from sisy import admin as sisy_admin
    page = admin_client_.get(TASKS + 'add/').content.decode()
    for name in PUBLIC_FIELDS:
        assert 'name="%s' % name in page, name  # split date-times add _0 and _1
    # A field added to PUBLIC_FIELDS without a place in the sections still shows.
    monkeypatch.setattr(sisy_admin, 'PUBLIC_FIELDS', PUBLIC_FIELDS + ('a_new_field',))
    sections = sisy_admin.TaskAdmin(Task, sisy_admin.admin.site).get_fieldsets(None)
    assert ('More', {'fields': ('a_new_field',)}) in sections


# -- hand-off jobs in the run history ---------------------------------------------------------

def job_runs(result):
    """The runs of a job, first attempt first."""
    return list(TaskRun.objects.filter(Q(pk=result.id) | Q(first_attempt=result.id))
                .order_by('attempt'))


def run_again(client, *runs):
    return client.post(RUNS, {'action': 'run_again',
                              '_selected_action': [run.pk for run in runs]}, follow=True)


@override_settings(SISY_QUEUES=['default', 'emails'])
def test_a_jobs_row_shows_its_function_call_attempt_queue_and_result(admin_client_):
    added = jobs.add.using(priority=7, queue_name='emails').enqueue(2, b=3)
    failing = jobs.always_fails.enqueue()  # three attempts, each an error
    run_due_tasks()
    page = rows(admin_client_.get(RUNS))
    assert page.count('class="row') == 4
    row = re.search(r'<tr class="row\d">(?:(?!</tr>).)*add\(2, b=3\)(?:(?!</tr>).)*</tr>',
                    page).group(0)
    assert re.search(r'tests\.testapp\.jobs\.add <a href="/admin/sisy/taskrun/\?job=%s" '
                     r'class="sisy-job">job %s</a>' % (added.id, added.id), row)
    cells = re.findall(r'<td class="field-(\w+)[^"]*">([^<]*)<', row)
    assert ('attempt', '1') in cells and ('queue_name', 'emails') in cells
    assert ('priority', '7') in cells and ('status', 'ok') in cells
    assert ('outcome_line', 'returned 5') in cells
    # Every attempt of a job names the job by its first attempt's id.
    assert page.count('>job %s</a>' % failing.id) == 3
    assert page.count('KeyError: &#39;never works&#39;') == 3
    assert 'always_fails()' in page


def test_a_jobs_page_shows_its_call_options_attempts_and_result(admin_client_):
    result = jobs.fail_once.enqueue('k1')
    run_due_tasks()
    first, second = job_runs(result)
    page = text(admin_client_.get(RUNS + '%d/change/' % second.pk))
    assert '<a href="/admin/sisy/taskrun/?job=%s">job %s</a>, 2 attempt(s) so far' % (
        result.id, result.id) in page
    assert 'tests.testapp.jobs.fail_once' in page
    assert '<pre class="sisy-call">fail_once(&#39;k1&#39;)</pre>' in page
    assert 'no timeout; 1 retry, 0 s apart' in page
    assert '<pre class="sisy-result">&#39;second time lucky&#39;</pre>' in page
    page = text(admin_client_.get(RUNS + '%d/change/' % first.pk))
    assert 'ValueError: first attempt of k1 fails' in page and 'Traceback' in page
    assert 'sisy-result' not in page


def test_a_long_call_is_laid_out_one_argument_a_line(admin_client_):
    result = jobs.label_call.enqueue(label='x' * 90)
    page = admin_client_.get(RUNS + '%s/change/' % result.id).content.decode()
    assert ('<pre class="sisy-call">label_call(\n    label=&#39;%s&#39;\n)</pre>' % ('x' * 90)
            in page)
    row = rows(admin_client_.get(RUNS))
    assert "label_call(label=&#39;%s\u2026<" % ('x' * 61) in row  # cut to 80 characters


def test_a_task_runs_page_has_no_job_fields(admin_client_, worker, soon):
    task = make('nightly', '* * * * *')
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    worker.tick(soon)
    page = text(admin_client_.get(RUNS + '%d/change/' % TaskRun.objects.get().pk))
    assert '<a href="/admin/sisy/task/%d/change/">nightly</a>' % task.pk in page
    assert 'Options:' not in page and 'sisy-call' not in page


def test_jobs_and_task_runs_apart_and_a_jobs_attempts_together(admin_client_, worker, soon):
    make('nightly', '* * * * *')
    Task.objects.update(next_run=soon)
    worker.tick(soon)
    failing = jobs.always_fails.enqueue()
    jobs.add.enqueue(1, 2)
    run_due_tasks()
    assert rows(admin_client_.get(RUNS)).count('class="row') == 5
    found = rows(admin_client_.get(RUNS, {'kind': 'job'}))
    assert found.count('class="row') == 4 and 'nightly' not in found
    found = rows(admin_client_.get(RUNS, {'kind': 'task'}))
    assert found.count('class="row') == 1 and 'nightly' in found
    page = admin_client_.get(RUNS, {'job': failing.id})
    assert rows(page).count('class="row') == 3 and 'add(' not in rows(page)
    assert 'By job' in text(page)
    assert 'By job' not in text(admin_client_.get(RUNS))
    assert 'id="result_list"' not in text(admin_client_.get(RUNS, {'job': 'x'}))
    found = rows(admin_client_.get(RUNS, {'task_label': 'tests.testapp.jobs.add'}))
    assert found.count('class="row') == 1  # a job's label is its function's dotted path


@override_settings(SISY_QUEUES=['default', 'emails'])
def test_the_queue_filter_lists_sisy_queues(admin_client_):
    jobs.add.using(queue_name='emails').enqueue(1, 2)
    jobs.add.enqueue(3, 4)
    page = admin_client_.get(RUNS, {'queue': 'emails'})
    assert 'By queue' in text(page)
    assert rows(page).count('class="row') == 1 and 'add(1, 2)' in rows(page)
    with override_settings(SISY_QUEUES=['default']):
        assert 'By queue' not in text(admin_client_.get(RUNS))


@override_settings(SISY_QUEUES=['default', 'emails'])
def test_run_again_enqueues_the_same_call_as_a_new_job(admin_client_):
    result = jobs.with_context.using(priority=-3, queue_name='emails').enqueue(note='hi')
    run_due_tasks()
    done = TaskRun.objects.get(pk=result.id)
    response = run_again(admin_client_, done)
    new = TaskRun.objects.exclude(pk=done.pk).get()
    assert said(response) == ('Enqueued the same call again, as a new job (a worker must be '
                              'running): job %s as job %s (tests.testapp.jobs.with_context).'
                              % (done.pk, new.pk))
    assert (new.status, new.attempt, new.first_attempt) == (TaskRun.PENDING, 1, None)
    assert (new.function, new.task_label, new.priority, new.queue_name) == (
        done.function, done.task_label, -3, 'emails')
    assert json.loads(new.arguments) == json.loads(done.arguments)
    assert new.job_options == done.job_options
    run_due_tasks()
    again = jobs.with_context.get_result(new.pk)
    assert again.return_value == {'attempt': 1, 'job': str(new.pk)}
    assert again.kwargs == {'note': 'hi'}


@pytest.mark.django_db(transaction=True)
@override_settings(SISY_QUEUES=['default', 'emails'])
def test_run_again_wakes_a_worker_of_the_jobs_queue(worker):
    done = TaskRun.objects.create(task_label='tests.testapp.jobs.add', status=TaskRun.OK,
                                  function='tests.testapp.jobs:add', queue_name='emails',
                                  arguments='{"args": [1, 2], "kwargs": {}}',
                                  scheduled_for=timezone.now())
    run_again(client_for(superuser=True), done)
    new = TaskRun.objects.get(status=TaskRun.PENDING)
    assert [message['run_id'] for message in
            (content for _, content in worker.pending('sisy.run_task.emails'))] == [new.pk]


def test_run_again_refuses_what_it_cannot_run_and_says_why(admin_client_):
    task = make('nightly')
    cron = run_of(task, TaskRun.OK)
    waiting = jobs.add.enqueue(1, 2)
    twice = jobs.add.enqueue(3, 4)
    retrying = jobs.add.enqueue(5, 6)
    run_due_tasks()
    TaskRun.objects.filter(pk=waiting.id).update(status=TaskRun.PENDING)
    first, = job_runs(twice)
    second = TaskRun.objects.create(  # a second, finished attempt of the same job
        task_label=first.task_label, function=first.function, arguments=first.arguments,
        options=first.options, attempt=2, first_attempt=first.pk, status=TaskRun.OK,
        scheduled_for=first.scheduled_for)
    retried, = job_runs(retrying)
    TaskRun.objects.create(task_label=retried.task_label, function=retried.function,
                           arguments=retried.arguments, attempt=2, first_attempt=retried.pk,
                           scheduled_for=retried.scheduled_for)  # waits for its retry
    gone = TaskRun.objects.create(task_label='tests.testapp.jobs.vanished', status='error',
                                  function='tests.testapp.jobs:vanished',
                                  scheduled_for=timezone.now())
    elsewhere = TaskRun.objects.create(task_label='tests.testapp.jobs.add', status='ok',
                                       function='tests.testapp.jobs:add', queue_name='old',
                                       scheduled_for=timezone.now())
    before = TaskRun.objects.count()
    response = run_again(admin_client_, cron, TaskRun.objects.get(pk=waiting.id), first,
                         second, retried, gone, elsewhere)
    new = TaskRun.objects.get(pk__gt=elsewhere.pk)
    assert TaskRun.objects.count() == before + 1  # one new job for the two attempts of one
    assert json.loads(new.arguments) == {'args': [3, 4], 'kwargs': {}}
    assert said(response).split(' | ') == [
        'Enqueued the same call again, as a new job (a worker must be running): job %s as job '
        '%s (tests.testapp.jobs.add).' % (first.pk, new.pk),
        'Not run again, as only hand-off jobs can be (a task runs on its schedule, or with '
        '"Run selected tasks now"): nightly (run %s).' % cron.pk,
        'Not run again, as they have not finished: tests.testapp.jobs.add (run %s, pending), '
        'tests.testapp.jobs.add (run %s: job %s has an attempt still to run).'
        % (waiting.id, retried.pk, retried.pk),
        "Not run again, as their queue is not one of SISY_QUEUES now: tests.testapp.jobs.add "
        "(run %s, queue 'old')." % elsewhere.pk,
        'Not run again, as their function cannot be imported now: tests.testapp.jobs.vanished '
        "(run %s: CallableNotFound: Module 'tests.testapp.jobs' has no attribute 'vanished'.)."
        % gone.pk]


@pytest.mark.skipif(not sisy_admin.HAS_VIEW_PERMISSION, reason='Django < 2.1: no view permission')
def test_running_jobs_again_needs_the_task_change_permission():
    done = jobs.add.enqueue(1, 2)
    run_due_tasks()
    run = TaskRun.objects.get(pk=done.id)
    viewer = client_for('view_taskrun', 'view_task')
    assert 'run_again' not in text(viewer.get(RUNS))
    run_again(viewer, run)
    assert TaskRun.objects.count() == 1
    operator = client_for('view_taskrun', 'change_task')
    assert 'run_again' in text(operator.get(RUNS))
    run_again(operator, run)
    assert TaskRun.objects.count() == 2


def test_the_run_history_page_does_not_grow_in_queries_with_jobs(admin_client_, soon):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    task = make('nightly')

    def add_runs(count):
        for _ in range(count):  # each job fails once, then succeeds: two rows
            jobs.fail_once.enqueue('k%d' % TaskRun.objects.count())
            run_of(task, TaskRun.OK)
        run_due_tasks()

    def queries():
        with CaptureQueriesContext(connection) as captured:
            page = admin_client_.get(RUNS)
        assert page.status_code == 200
        return len(captured.captured_queries), rows(page).count('class="row')

    add_runs(1)
    few, shown = queries()
    assert shown == 3
    add_runs(20)
    assert queries() == (few, 63)
