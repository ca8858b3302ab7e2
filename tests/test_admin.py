"""The admin: task list in plain words, creating tasks, actions, run history, permissions."""

import datetime as dt
import json
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from sisy import admin as sisy_admin
from sisy.models import Task, TaskRun, task_with_callable
from tests.testapp import tasks
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
            'iterations': '0', 'userdata': ''}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def text(response):
    return re.sub(r'\s+', ' ', response.content.decode())


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


def test_run_now_action_makes_the_task_due_and_says_when(admin_client_):
    task = make()
    off = make('off', enabled=False)
    response = admin_client_.post(TASKS, {'action': 'run_now',
                                          '_selected_action': [task.pk, off.pk]}, follow=True)
    page = text(response)
    assert 'Will run at the next heartbeat tick' in page and 'nightly' in page
    assert 'Not run because disabled or finished: off' in page
    task.refresh_from_db()
    assert task.next_run <= timezone.now()


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
