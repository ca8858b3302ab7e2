"""Bad input is a clear error before the database, on every way a task is made or saved.

Each case is checked twice: through the helpers code calls (task_with_callable,
run_once, run_iterations: ValueError) and through save() / full_clean() (what
data migrations and the admin use: ValidationError keyed by the field). Each
time the message must name the bad value (and the limit, where there is one)
and no row may have been written.
"""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from sisy.models import Task, TaskRun, task_with_callable

pytestmark = pytest.mark.django_db
PATH = 'tests.testapp.tasks.record'
NAN, INF = float('nan'), float('inf')
# Valid cron, but longer than the schedule column holds.
LONG_SCHEDULE = ' '.join(','.join(str(n) for n in values) for values in (
    range(60), range(24), range(1, 32), range(1, 13), range(7)))
LATER = timezone.now() + dt.timedelta(days=30)
EARLIER = timezone.now() - dt.timedelta(days=1)
YEAR = 365 * 24 * 3600
LOOP = {'name': 'me'}
LOOP['me'] = LOOP  # userdata that contains itself
DEEP = []
for _ in range(5000):  # deeper than Python's recursion limit
    DEEP = [DEEP]
DEEP_CASE = {'deep': DEEP}

# field, bad value, other fields it needs, what the message must say
CASES = [
    ('end_running', LATER - dt.timedelta(hours=1), {'start_running': LATER},
     ['is not after start_running', LATER.isoformat()]),
    ('end_running', LATER, {'start_running': LATER}, ['is not after start_running']),
    ('end_running', EARLIER, {}, ['is in the past', EARLIER.isoformat()]),
    ('end_running', dt.datetime(2040, 1, 1), {}, ['must be an aware datetime', '2040']),
    ('iterations', -1, {}, ['iterations must be a whole number, 0 (run forever) or more',
                            'got -1']),
    ('iterations', 1.5, {}, ['got 1.5']),
    ('iterations', 2 ** 31, {}, ['iterations must be at most 2147483647', 'got 2147483648']),
    ('label', 'x' * 300, {}, ['300 characters long', 'at most 255', "'xxxxxxxx"]),
    ('schedule', LONG_SCHEDULE, {}, ['%d characters long' % len(LONG_SCHEDULE), 'at most 200',
                                     "'0,1,2,3"]),
    ('timeout', 0, {}, ['timeout must be a number of seconds greater than 0', 'got 0']),
    ('timeout', -5, {}, ['got -5', 'or None for no limit']),
    ('timeout', NAN, {}, ['got nan']),
    ('timeout', INF, {}, ['got inf']),
    ('timeout', '30', {}, ["got '30'"]),
    ('timeout', True, {}, ['got True']),
    ('timeout', YEAR + 1, {}, ['timeout must be at most 31536000 seconds (365 days)',
                               'got 31536001']),
    ('retries', -1, {}, ['retries must be a whole number, 0 (no retries) or more', 'got -1']),
    ('retries', 2.5, {}, ['got 2.5']),
    ('retries', 2 ** 31 - 1, {}, ['retries must be at most 2147483646', 'retries + 1',
                                  'got 2147483647']),
    ('retry_delay', -1, {}, ['retry_delay must be a number of seconds, 0 or more', 'got -1']),
    ('retry_delay', INF, {}, ['got inf']),
    ('retry_delay', NAN, {}, ['got nan']),
    ('retry_delay', 1e12, {}, ['retry_delay must be at most 31536000 seconds (365 days)',
                               'got 1000000000000.0']),
    ('userdata', {'x': NAN}, {}, ["userdata['x'] is nan", 'no NaN or Infinity']),
    ('userdata', {'a': {'b': [1, -INF]}}, {}, ["userdata['a']['b'][1] is -inf"]),
    ('userdata', LOOP, {}, ["['me'] is userdata", 'contains itself']),
    ('userdata', DEEP_CASE, {}, ['userdata is nested deeper than JSON can store']),
]
IDS = ['%s=%s' % (case[0], 'deep' if case[1] is DEEP_CASE else str(case[1])[:12])
       for case in CASES]


def put(task, field, bad):
    """Set a bad value as code editing a task would (userdata is changed in place)."""
    if field == 'userdata':
        task.userdata.update(bad)
    else:
        setattr(task, field, bad)


def check_message(text, says):
    for part in says:
        assert part in text


@pytest.mark.parametrize('field, bad, other, says', CASES, ids=IDS)
def test_task_with_callable_refuses(field, bad, other, says):
    with pytest.raises(ValueError) as error:
        task_with_callable(PATH, **dict(other, **{field: bad}))
    check_message(str(error.value), says)
    assert Task.objects.count() == 0


@pytest.mark.parametrize('field, bad, other, says', CASES, ids=IDS)
def test_save_and_full_clean_refuse_keyed_by_field(field, bad, other, says):
    for check in ('save', 'full_clean'):
        task = task_with_callable(PATH, **other)
        put(task, field, bad)
        with pytest.raises(ValidationError) as error:
            getattr(task, check)()
        messages = error.value.message_dict[field]
        assert len(messages) == 1, messages  # said once, not again by Django's field checks
        check_message(messages[0], says)
    assert Task.objects.count() == 0


@pytest.mark.parametrize('field, bad, other, says', [
    case for case in CASES if case[0] != 'end_running'], ids=[
    name for name, case in zip(IDS, CASES) if case[0] != 'end_running'])
def test_an_existing_task_keeps_its_row_when_an_edit_is_refused(field, bad, other, says):
    task = task_with_callable(PATH, label='kept', userdata={'n': 1})
    task.save()
    put(task, field, bad)
    with pytest.raises(ValidationError) as error:
        task.save()
    check_message(error.value.message_dict[field][0], says)
    fresh = Task.objects.get()
    assert (fresh.label, fresh.iterations, fresh.timeout, fresh.userdata) == \
        ('kept', 0, None, {'n': 1})


def test_moving_the_end_of_an_existing_task_into_the_past_is_refused():
    task = task_with_callable(PATH, end_running=LATER)
    task.save()
    task.end_running = EARLIER
    with pytest.raises(ValidationError) as error:
        task.save()
    assert 'is in the past' in error.value.message_dict['end_running'][0]
    assert Task.objects.get().end_running == LATER


def test_a_task_whose_end_has_passed_can_still_be_edited():
    task = task_with_callable(PATH, end_running=LATER)
    task.save()
    Task.objects.update(end_running=EARLIER)  # time went by
    task = Task.objects.get()
    task.label = 'renamed'
    task.full_clean()
    task.save()
    assert Task.objects.get().label == 'renamed'


@pytest.mark.parametrize('helper, keywords, says', [
    (Task.run_once, {'timeout': -1}, 'got -1'),
    (Task.run_once, {'timeout': NAN}, 'got nan'),
    (Task.run_once, {'userdata': {'x': NAN}}, "userdata['x'] is nan"),
    (Task.run_iterations, {'iterations': 2, 'timeout': 0}, 'got 0'),
    (Task.run_iterations, {'label': 'y' * 256}, '256 characters long; at most 255'),
    (Task.run_iterations, {'schedule': LONG_SCHEDULE}, 'at most 200'),
    (Task.run_iterations, {'iterations': 2 ** 31}, '1 to 2147483647; got 2147483648'),
    (Task.run_once, {'timeout': 1e12}, 'at most 31536000 seconds'),
])
def test_run_once_and_run_iterations_refuse_before_saving(helper, keywords, says):
    with pytest.raises(ValueError) as error:
        helper(PATH, **keywords)
    assert says in str(error.value)
    assert Task.objects.count() == 0


def test_several_bad_fields_are_all_reported():
    task = task_with_callable(PATH)
    task.iterations, task.retries = -1, -2
    with pytest.raises(ValidationError) as error:
        task.full_clean()
    assert set(error.value.message_dict) == {'iterations', 'retries'}
    with pytest.raises(ValueError, match='got -1.*got -2'):
        task_with_callable(PATH, iterations=-1, retries=-2)


@override_settings(SISY_DEFAULT_TIMEOUT=30)
def test_timeout_left_out_is_the_setting_and_none_is_no_limit():
    assert Task.run_once(PATH).timeout == 30
    assert Task.run_once(PATH, timeout=None).timeout is None
    assert Task.run_iterations(PATH, iterations=2, timeout=2.5).timeout == 2.5
    assert task_with_callable(PATH).timeout == 30


def test_timeout_and_retries_are_accepted_by_the_factory():
    task = task_with_callable(PATH, timeout=5, retries=2, retry_delay=0)
    task.save()
    assert Task.objects.filter(timeout=5, retries=2, retry_delay=0).count() == 1


def test_the_largest_counts_and_delays_allowed_are_saved_and_a_retry_can_be_timed():
    task = task_with_callable(PATH, iterations=2 ** 31 - 1, retries=2 ** 31 - 2,
                              timeout=YEAR, retry_delay=YEAR)
    task.full_clean()
    task.save()
    fresh = Task.objects.get()
    assert (fresh.iterations, fresh.retries, fresh.timeout, fresh.retry_delay) == \
        (2 ** 31 - 1, 2 ** 31 - 2, YEAR, YEAR)
    last_attempt = TaskRun.objects.create(task=fresh, task_label=fresh.label,
                                          scheduled_for=timezone.now(), attempt=fresh.retries + 1)
    assert last_attempt.attempt == 2 ** 31 - 1
    assert timezone.now() + dt.timedelta(seconds=fresh.retry_delay) > timezone.now()
