"""The Prometheus view: who may read it, and what it says (read with prometheus_client's parser)."""

import datetime as dt
import math
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from sisy import checks, metrics
from sisy.models import Task, TaskRun, TickRecord, task_with_callable
from tests.testapp import jobs, tasks

pytestmark = pytest.mark.django_db
URL = '/sisy/metrics'
TOKEN = 's3cret-token-for-tests'


def client_for(staff=True, active=True):
    user = User.objects.create_user('user-%s' % User.objects.count(), password='pw',
                                    is_staff=staff, is_active=active)
    client = Client()
    client.force_login(user)
    return client


def scrape(client=None, **headers):
    response = (client or client_for()).get(URL, **headers)
    assert response.status_code == 200, response.content
    assert response['Content-Type'].startswith('text/plain; version=0.0.4')
    return {family.name: family
            for family in text_string_to_metric_families(response.content.decode())}


def values(family, label=None):
    """{label value (or sample name): value} of a parsed family."""
    return {(sample.labels[label] if label else sample.name): sample.value
            for sample in family.samples}


def make(label, **fields):
    task = task_with_callable(tasks.record, label=label, schedule='* * * * *', **fields)
    task.save()
    return task


def add_run(task, status, claimed_ago, **fields):
    when = timezone.now() - dt.timedelta(seconds=claimed_ago)
    run = TaskRun.objects.create(task=task, task_label=task.label, scheduled_for=when,
                                 status=status, **fields)
    TaskRun.objects.filter(pk=run.pk).update(created_at=when)
    return run


def test_the_view_is_named_metrics_under_sisy_urls():
    assert reverse('sisy:metrics') == URL


def test_anonymous_visitors_are_refused():
    response = Client().get(URL)
    assert response.status_code == 403
    assert b'SISY_METRICS_TOKEN' in response.content


def test_users_who_are_not_staff_are_refused():
    assert client_for(staff=False).get(URL).status_code == 403


def test_staff_may_read():
    assert 'sisy_tasks' in scrape(client_for())


@override_settings(SISY_METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize('header, status', [
    ('Bearer ' + TOKEN, 200),
    ('bearer ' + TOKEN, 200),            # the scheme is case-insensitive
    ('Bearer ' + TOKEN + 'x', 403),
    ('Bearer ' + TOKEN[:-1], 403),
    ('Bearer ', 403),
    ('Basic ' + TOKEN, 403),
    (None, 403),
])
def test_the_bearer_token(header, status):
    headers = {} if header is None else {'HTTP_AUTHORIZATION': header}
    assert Client().get(URL, **headers).status_code == status


def test_no_token_is_accepted_while_the_setting_is_none():
    assert Client().get(URL, HTTP_AUTHORIZATION='Bearer None').status_code == 403
    with override_settings(SISY_METRICS_TOKEN=''):
        assert Client().get(URL, HTTP_AUTHORIZATION='Bearer ').status_code == 403


def test_openmetrics_when_the_scraper_asks_for_it():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
    response = client_for().get(URL, HTTP_ACCEPT='application/openmetrics-text; version=1.0.0,'
                                                 'text/plain;version=0.0.4;q=0.5')
    assert response['Content-Type'].startswith('application/openmetrics-text')
    names = {family.name for family in parse(response.content.decode())}
    assert {'sisy_tasks', 'sisy_run_duration_seconds', 'sisy_last_tick_age_seconds'} <= names


def test_only_reading_is_allowed():
    assert client_for().post(URL).status_code == 405


def test_tasks_by_state_queue_and_ticks():
    now = timezone.now()
    TickRecord.objects.create(worker='w pid 1', tick=now,
                              processed_at=now - dt.timedelta(seconds=7))
    busy = make('busy', allow_overlap=True)
    make('off', enabled=False)
    make('done')
    Task.objects.filter(label='done').update(finished_at=now, next_run=None)
    Task.objects.filter(label='busy').update(running=True)
    for _ in range(3):
        add_run(busy, TaskRun.PENDING, claimed_ago=40)
    add_run(busy, TaskRun.PENDING, claimed_ago=50, attempt=2,
            not_before=now + dt.timedelta(seconds=60))
    found = scrape(HTTP_AUTHORIZATION='Bearer x')  # a staff session is enough
    assert values(found['sisy_tasks'], 'state') == {
        'enabled': 1.0, 'disabled': 1.0, 'running': 1.0, 'finished': 1.0}
    assert values(found['sisy_pending_runs'], 'waiting_for') == {
        'worker': 3.0, 'retry_delay': 1.0, 'run_after': 0.0}
    assert 40 <= found['sisy_oldest_pending_run_age_seconds'].samples[0].value < 45
    assert 7 <= found['sisy_last_tick_age_seconds'].samples[0].value < 12
    assert found['sisy_heartbeat_period_seconds'].samples[0].value == 60


def enqueued(job, seconds_ago, attempt=1, **options):
    """A hand-off job of `job` enqueued `seconds_ago` seconds ago (`options` go to using())."""
    run_id = int((job.using(**options) if options else job).enqueue(1, 2).id)
    when = timezone.now() - dt.timedelta(seconds=seconds_ago)
    TaskRun.objects.filter(pk=run_id).update(created_at=when, scheduled_for=when,
                                             attempt=attempt)
    return run_id


def jobs_by(family, *labels):
    return {tuple(sample.labels[label] for label in labels): sample.value
            for sample in family.samples}


@override_settings(SISY_QUEUES=['default', 'emails', 'idle'])
def test_waiting_hand_off_jobs_per_queue():
    now = timezone.now()
    add_run(make('nightly'), TaskRun.PENDING, claimed_ago=500)  # a task's run: not a job
    enqueued(jobs.add, 30)
    enqueued(jobs.add, 200, queue_name='emails')
    enqueued(jobs.add, 100, queue_name='emails')
    enqueued(jobs.add, 900, queue_name='emails', run_after=now + dt.timedelta(minutes=5))
    enqueued(jobs.add, 900, queue_name='emails', attempt=2,  # a retry in its delay
             run_after=now + dt.timedelta(seconds=30))
    enqueued(jobs.add, 900, queue_name='emails', run_after=now - dt.timedelta(seconds=250))
    taken = enqueued(jobs.add, 900, queue_name='emails')
    TaskRun.objects.filter(pk=taken).update(status=TaskRun.RUNNING)  # no longer waiting
    found = scrape()
    assert jobs_by(found['sisy_pending_jobs'], 'queue', 'waiting_for') == {
        ('default', 'worker'): 1, ('default', 'retry_delay'): 0, ('default', 'run_after'): 0,
        ('emails', 'worker'): 3, ('emails', 'retry_delay'): 1, ('emails', 'run_after'): 1,
        ('idle', 'worker'): 0, ('idle', 'retry_delay'): 0, ('idle', 'run_after'): 0}
    ages = values(found['sisy_oldest_pending_job_age_seconds'], 'queue')
    assert set(ages) == {'default', 'emails', 'idle'}
    assert 30 <= ages['default'] < 35
    assert 250 <= ages['emails'] < 255  # waiting since its run_after time
    assert ages['idle'] == 0
    assert values(found['sisy_pending_runs'], 'waiting_for') == {
        'worker': 5, 'retry_delay': 1, 'run_after': 1}
    assert 500 <= found['sisy_oldest_pending_run_age_seconds'].samples[0].value < 505


def test_jobs_waiting_in_a_queue_left_out_of_sisy_queues_still_show():
    with override_settings(SISY_QUEUES=['default', 'old']):
        enqueued(jobs.add, 60, queue_name='old')
    ages = values(scrape()['sisy_oldest_pending_job_age_seconds'], 'queue')
    assert set(ages) == {'default', 'old'} and 60 <= ages['old'] < 65


def test_an_empty_site():
    found = scrape()
    assert set(values(found['sisy_tasks'], 'state').values()) == {0.0}
    assert found['sisy_oldest_pending_run_age_seconds'].samples[0].value == 0
    assert values(found['sisy_oldest_pending_job_age_seconds'], 'queue') == {'default': 0}
    assert found['sisy_last_tick_age_seconds'].samples[0].value == math.inf
    assert found['sisy_task_consecutive_failures'].samples == []
    assert values(found['sisy_run_duration_seconds'])['sisy_run_duration_seconds_count'] == 0


def test_per_task_series():
    ok_at = timezone.now() - dt.timedelta(minutes=5)
    nightly = make('nightly')
    Task.objects.filter(pk=nightly.pk).update(last_outcome=TaskRun.OK, last_run=ok_at)
    sync = make('sync')
    add_run(sync, TaskRun.OK, claimed_ago=3600, started_at=ok_at - dt.timedelta(hours=1))
    for _ in range(4):
        add_run(sync, TaskRun.ERROR, claimed_ago=60, started_at=timezone.now(), duration=1)
    Task.objects.filter(pk=sync.pk).update(last_outcome=TaskRun.ERROR, last_run=timezone.now())
    make('off', enabled=False)
    # Two tasks with one label share its series: the earlier next run, the later success.
    twin = make('nightly')
    Task.objects.filter(pk=twin.pk).update(next_run=nightly.next_run - dt.timedelta(hours=1),
                                           last_outcome=TaskRun.OK,
                                           last_run=ok_at - dt.timedelta(days=1))
    found = scrape()
    assert values(found['sisy_task_consecutive_failures'], 'task') == {
        'nightly': 0, 'sync': 4, 'off': 0}
    assert values(found['sisy_task_last_success_timestamp_seconds'], 'task') == {
        'nightly': ok_at.timestamp(), 'sync': (ok_at - dt.timedelta(hours=1)).timestamp()}
    next_runs = values(found['sisy_task_next_run_timestamp_seconds'], 'task')
    assert next_runs == {
        'nightly': (nightly.next_run - dt.timedelta(hours=1)).timestamp(),
        'sync': Task.objects.get(pk=sync.pk).next_run.timestamp()}
    assert found['sisy_task_series_truncated'].samples[0].value == 0


def test_per_task_series_are_limited_failing_tasks_first():
    for label in ('a', 'b', 'c', 'd'):
        make(label)
    Task.objects.filter(label='d').update(last_outcome=TaskRun.ERROR, last_run=timezone.now())
    with override_settings(SISY_METRICS_TASK_LIMIT=2):
        found = scrape()
    assert set(values(found['sisy_task_consecutive_failures'], 'task')) == {'d', 'a'}
    assert found['sisy_task_series_truncated'].samples[0].value == 1
    with override_settings(SISY_METRICS_TASK_LIMIT=0):
        assert scrape()['sisy_task_next_run_timestamp_seconds'].samples == []


def test_many_labels_are_read_in_chunks(monkeypatch):
    monkeypatch.setattr(metrics, 'CHUNK', 2)
    for label in 'abcde':
        make(label)
    assert len(scrape()['sisy_task_next_run_timestamp_seconds'].samples) == 5


def test_recent_run_summaries():
    task = make('work', allow_overlap=True)
    now = timezone.now()
    for delay, duration in ((1, 2.0), (2, 4.0), (3, 6.0), (4, 8.0)):
        scheduled = now - dt.timedelta(seconds=60)
        run = add_run(task, TaskRun.OK, claimed_ago=60, duration=duration,
                      started_at=scheduled + dt.timedelta(seconds=delay))
        TaskRun.objects.filter(pk=run.pk).update(scheduled_for=scheduled)
    add_run(task, TaskRun.ERROR, claimed_ago=30, attempt=2, duration=10.0,
            not_before=now - dt.timedelta(seconds=20), started_at=now - dt.timedelta(seconds=15))
    add_run(task, TaskRun.RUNNING, claimed_ago=10, started_at=now - dt.timedelta(seconds=5))
    add_run(task, TaskRun.OK, claimed_ago=3600, duration=100.0,  # outside the window
            started_at=now - dt.timedelta(seconds=3600))
    add_run(task, TaskRun.SKIPPED, claimed_ago=5, started_at=now)
    found = scrape()
    assert values(found['sisy_recent_runs'], 'status') == {
        'running': 1, 'ok': 4, 'error': 1, 'timeout': 0, 'stopped': 0, 'lost': 0}
    durations = found['sisy_run_duration_seconds']
    assert durations.type == 'summary'
    samples = {(s.name, s.labels.get('quantile')): s.value for s in durations.samples}
    assert samples[('sisy_run_duration_seconds_count', None)] == 5
    assert samples[('sisy_run_duration_seconds_sum', None)] == 30
    assert samples[('sisy_run_duration_seconds', '0.5')] == 6
    assert samples[('sisy_run_duration_seconds', '0.99')] == 10
    delays = {(s.name, s.labels.get('quantile')): s.value
              for s in found['sisy_run_start_delay_seconds'].samples}
    assert delays[('sisy_run_start_delay_seconds_count', None)] == 6
    assert delays[('sisy_run_start_delay_seconds', '0.5')] == pytest.approx(3, abs=0.01)
    assert delays[('sisy_run_start_delay_seconds', '0.9')] == pytest.approx(5, abs=0.01)


def test_a_scrape_takes_a_bounded_number_of_queries(django_assert_max_num_queries):
    for number in range(30):
        task = make('task-%d' % number)
        Task.objects.filter(pk=task.pk).update(last_outcome=TaskRun.ERROR)
        add_run(task, TaskRun.ERROR, claimed_ago=10, started_at=timezone.now(), duration=1)
    client = client_for()
    with django_assert_max_num_queries(12):
        scrape(client)


@pytest.mark.parametrize('name, value', [
    ('SISY_METRICS_TOKEN', ''), ('SISY_METRICS_TOKEN', ' padded '), ('SISY_METRICS_TOKEN', 42),
    ('SISY_METRICS_TASK_LIMIT', -1), ('SISY_METRICS_TASK_LIMIT', 1.5),
    ('SISY_METRICS_TASK_LIMIT', True),
])
def test_bad_metrics_settings_are_reported(name, value):
    with override_settings(**{name: value}):
        errors = checks.check_settings()
    assert [error.id for error in errors] == ['sisy.E010']
    assert errors[0].msg.startswith('%s=%r' % (name, value))


def test_good_metrics_settings_pass_the_checks():
    with override_settings(SISY_METRICS_TOKEN=TOKEN, SISY_METRICS_TASK_LIMIT=0):
        assert checks.check_settings() == []


# A fresh interpreter: what loading a URLconf that includes sisy.urls imports.
LOAD_URLS = """
import sys
from django.conf import settings
settings.configure(INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth',
                                   'channels', 'sisy.apps.SisyConfig'], USE_TZ=True)
import django
django.setup()
import sisy.urls
print('prometheus_client' in sys.modules)
"""


def test_loading_the_urls_leaves_prometheus_client_to_the_first_scrape():
    # Every process's system checks load the URLconf; only a scrape needs the client.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, '-c', LOAD_URLS], cwd=root,
                            env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'False'
