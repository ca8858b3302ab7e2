"""Creating tasks: the factory, run_once/run_iterations, validation, userdata, saving."""

import datetime as dt
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from sisy import dispatch
from sisy.models import Task, TaskRun, task_with_callable, taskinfo_with_label
from sisy.schedule import InvalidSchedule
from tests.testapp import tasks
from tests.testapp.models import Call

pytestmark = pytest.mark.django_db
PATH = 'tests.testapp.tasks.record'


def test_factory_returns_an_unsaved_task_with_defaults():
    task = task_with_callable(tasks.record)
    assert task.pk is None
    assert task.label == PATH
    assert task.schedule == '* * * * *'
    assert task.funcinfo == {'module': 'tests.testapp.tasks', 'qualname': 'record',
                             'kind': 'function'}
    assert task.userdata == {}
    assert Task.objects.count() == 0


def test_quick_howto_from_the_readme():
    task = task_with_callable(PATH, label='weekday-business-hours-function',
                              schedule='0,15,30,45 9-17 * * mon-fri')
    task.save()
    saved = Task.objects.get(label='weekday-business-hours-function')
    local = timezone.localtime(saved.next_run)
    assert local.weekday() < 5 and 9 <= local.hour <= 17 and local.minute % 15 == 0


@override_settings(SISY_DEFAULT_SCHEDULE='*/5 * * * *')
def test_default_schedule_setting_is_read_when_used():
    assert task_with_callable(PATH).schedule == '*/5 * * * *'
    assert Task().schedule == '*/5 * * * *'


def test_factory_accepts_public_fields():
    start = timezone.now() + dt.timedelta(days=1)
    task = task_with_callable(PATH, start_running=start, end_running=start + dt.timedelta(days=2),
                              allow_overlap=True, iterations=3, enabled=False)
    assert (task.start_running, task.allow_overlap, task.iterations, task.enabled) == \
        (start, True, 3, False)


def test_factory_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="unexpected keyword.*next_run.*accepts label"):
        task_with_callable(PATH, next_run=timezone.now())


def test_factory_rejects_bad_schedule_before_anything_is_saved():
    with pytest.raises(InvalidSchedule, match="minute field '99'"):
        task_with_callable(PATH, schedule='99 * * * *')
    assert Task.objects.count() == 0


def test_factory_rejects_naive_start():
    with pytest.raises(ValueError, match='start_running must be an aware datetime'):
        task_with_callable(PATH, start_running=dt.datetime(2030, 1, 1))


def test_save_rejects_bad_schedule_keyed_by_field():
    task = task_with_callable(PATH)
    task.schedule = '* * * * * * *'
    with pytest.raises(ValidationError) as error:
        task.save()
    assert "'* * * * * * *' has 7 fields" in error.value.message_dict['schedule'][0]
    assert Task.objects.count() == 0


def test_full_clean_reports_bad_schedule_for_admin_forms():
    task = task_with_callable(PATH)
    task.schedule = '0 25 * * *'
    with pytest.raises(ValidationError) as error:
        task.full_clean()
    assert "hour field '25'" in error.value.message_dict['schedule'][0]


def test_next_run_is_the_first_slot_in_local_time():
    task = task_with_callable(PATH, schedule='30 0 * * *')
    task.save()
    local = timezone.localtime(task.next_run)
    assert (local.hour, local.minute) == (0, 30)
    assert task.next_run > timezone.now()


def test_start_running_delays_the_first_slot():
    tz = timezone.get_current_timezone()
    start = tz.localize(dt.datetime(2031, 1, 1, 0, 0))
    task = task_with_callable(PATH, schedule='0 7-19 * * *', start_running=start,
                              end_running=tz.localize(dt.datetime(2031, 2, 14)))
    task.save()
    assert timezone.localtime(task.next_run).replace(tzinfo=None) == dt.datetime(2031, 1, 1, 7, 0)


def test_not_waiting_for_the_schedule_runs_at_start():
    start = timezone.now() + dt.timedelta(hours=5)
    task = task_with_callable(PATH, schedule='0 0 1 1 *', start_running=start,
                              wait_for_schedule=False)
    task.save()
    assert task.next_run == start


def test_end_before_first_slot_means_no_run():
    now = timezone.now()
    task = task_with_callable(PATH, schedule='0 0 1 1 *', end_running=now + dt.timedelta(minutes=1))
    task.save()
    assert task.next_run is None


def test_userdata_round_trip_and_in_place_changes_are_saved():
    task = task_with_callable(PATH, userdata={'who': 'me'})
    task.save()
    task.userdata['count'] = 3
    task.save()
    assert Task.objects.get(pk=task.pk).userdata == {'who': 'me', 'count': 3}


@pytest.mark.parametrize('bad, says', [
    ([1, 2], 'must be a dict'),
    ({'when': timezone.now()}, 'cannot be stored as JSON'),
    ('{"a": 1}', 'must be a dict'),
])
def test_bad_userdata_is_a_clear_error(bad, says):
    with pytest.raises(ValueError, match=says):
        task_with_callable(PATH, userdata=bad)


def test_invalid_stored_userdata_is_a_clear_error():
    task = task_with_callable(PATH)
    task.save()
    Task.objects.filter(pk=task.pk).update(_extra_data='{not json')
    with pytest.raises(ValueError, match="invalid userdata JSON '{not json'"):
        Task.objects.get(pk=task.pk).userdata


def test_stale_copy_does_not_undo_what_workers_recorded():
    task = task_with_callable(PATH)
    task.save()
    stale = Task.objects.get(pk=task.pk)
    moved = task.next_run + dt.timedelta(minutes=7)
    Task.objects.filter(pk=task.pk).update(next_run=moved, iterations=4)
    stale.label = 'renamed'
    stale.save()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.label, fresh.next_run, fresh.iterations) == ('renamed', moved, 4)


def test_reading_deferred_userdata_does_not_write_it_back():
    task = task_with_callable(PATH, userdata={'n': 1})
    task.save()
    copy = Task.objects.defer('_extra_data').get(pk=task.pk)
    assert copy.userdata == {'n': 1}  # loaded now, as the admin's form does
    Task.objects.filter(pk=task.pk).update(_extra_data='{"n": 2}')  # a run wrote it meanwhile
    copy.label = 'renamed'
    copy.save()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.label, fresh.userdata) == ('renamed', {'n': 2})


def test_setting_deferred_userdata_is_saved():
    task = task_with_callable(PATH, userdata={'n': 1})
    task.save()
    copy = Task.objects.defer('_extra_data').get(pk=task.pk)
    copy.userdata = {'n': 5}
    copy.save()
    assert Task.objects.get(pk=task.pk).userdata == {'n': 5}


def test_refresh_from_db_takes_in_what_workers_wrote():
    task = task_with_callable(PATH, userdata={'n': 1})
    task.save()
    task.userdata  # cached
    moved = task.next_run + dt.timedelta(minutes=3)
    Task.objects.filter(pk=task.pk).update(next_run=moved, _extra_data='{"n": 2}')
    task.refresh_from_db()
    assert task.userdata == {'n': 2}
    task.schedule = '*/2 * * * *'
    task.save()  # retimes from the slot it now knows, without a stale compare-and-set
    fresh = Task.objects.get(pk=task.pk)
    assert fresh.userdata == {'n': 2} and fresh.next_run == task.next_run != moved


def test_changing_the_schedule_recomputes_next_run():
    task = task_with_callable(PATH, schedule='0 0 1 1 *')
    task.save()
    task.schedule = '* * * * *'
    task.save()
    assert task.next_run - timezone.now() <= dt.timedelta(minutes=1)
    assert Task.objects.get(pk=task.pk).next_run == task.next_run


def test_run_once_is_due_now():
    before = timezone.now()
    task = Task.run_once(tasks.record, userdata={'n': 1})
    assert task.pk is not None and task.iterations == 1
    assert before <= task.next_run <= timezone.now()
    assert Task.objects.get(pk=task.pk).userdata == {'n': 1}


def test_run_once_by_dotted_path_with_delay():
    later = timezone.now() + dt.timedelta(days=3)
    task = Task.run_once(PATH, delay_until=later)
    assert task.next_run == later


@pytest.mark.parametrize('bad, says', [
    (dt.datetime(2040, 1, 1), 'has no time zone'),
    (timezone.now() - dt.timedelta(seconds=1), 'is not in the future'),
    ('tomorrow', 'must be a datetime'),
])
def test_bad_delay_until(bad, says):
    with pytest.raises(ValueError) as error:
        Task.run_once(PATH, delay_until=bad)
    assert says in str(error.value) and str(bad)[:10] in str(error.value)
    assert Task.objects.count() == 0


def test_run_iterations_waits_for_the_schedule_by_default():
    task = Task.run_iterations(PATH, iterations=10, schedule='0 7-19 * * *')
    assert task.iterations == 10 and task.wait_for_schedule
    assert timezone.localtime(task.next_run).minute == 0


@pytest.mark.parametrize('bad', [0, -1, 1.5, '3', True])
def test_run_iterations_needs_a_positive_count(bad):
    with pytest.raises(ValueError, match='iterations must be a whole number.*%r' % (bad,)):
        Task.run_iterations(PATH, iterations=bad)


def test_taskinfo_with_label():
    counter_task = task_with_callable('tests.testapp.models.Counter.bump', label='bump-7',
                                      pk_override=7)
    counter_task.save()
    assert taskinfo_with_label('bump-7')['model_pk'] == 7
    with pytest.raises(Task.DoesNotExist, match="'nope'"):
        taskinfo_with_label('nope')


def test_funcinfo_is_json_with_no_code():
    task = task_with_callable(tasks.record)
    assert json.loads(task._func_info) == task.funcinfo


# -- no slot left before the end -----------------------------------------------------------

def slot_weeks_away():
    """A yearly schedule whose one slot is three weeks from now."""
    day = timezone.localtime() + dt.timedelta(days=21)
    return '0 0 %d %d *' % (day.day, day.month)


def in_days(days):
    return timezone.now() + dt.timedelta(days=days)


def test_a_task_whose_end_comes_before_its_first_slot_is_finished_and_reaped(worker, soon,
                                                                             caplog):
    task = task_with_callable(PATH, label='too-short', schedule=slot_weeks_away(),
                              end_running=in_days(7))
    task.save()
    fresh = Task.objects.get(pk=task.pk)
    assert fresh.next_run is None and fresh.finished_at is not None
    assert "Task 'too-short' has no slot left before its end" in caplog.text
    worker.tick(soon)
    assert not Task.objects.filter(pk=task.pk).exists()


def test_enabling_a_task_whose_end_passed_while_it_was_disabled_finishes_it(worker, soon):
    task = task_with_callable(PATH, schedule='0 3 * * *', end_running=in_days(7))
    task.save()
    task.enabled = False
    task.save()
    Task.objects.filter(pk=task.pk).update(next_run=in_days(-9), end_running=in_days(-2))
    task = Task.objects.get(pk=task.pk)  # nine days later, as the admin loads it
    task.enabled = True
    task.save()
    fresh = Task.objects.get(pk=task.pk)
    assert fresh.next_run is None and fresh.finished_at is not None
    worker.tick(soon)
    assert not Task.objects.filter(pk=task.pk).exists() and Call.objects.count() == 0


def test_a_new_schedule_with_no_slot_before_the_end_finishes_the_task():
    task = task_with_callable(PATH, schedule='* * * * *', end_running=in_days(7))
    task.save()
    task.schedule = slot_weeks_away()
    task.save()
    fresh = Task.objects.get(pk=task.pk)
    assert fresh.next_run is None and fresh.finished_at is not None


def test_a_task_saved_finished_gets_no_slot_from_a_later_edit():
    task = task_with_callable(PATH, schedule=slot_weeks_away(), end_running=in_days(7))
    task.save()
    finished_at = task.finished_at
    task.schedule, task.end_running = '* * * * *', in_days(60)
    task.save()
    fresh = Task.objects.get(pk=task.pk)
    assert finished_at is not None
    assert fresh.next_run is None and fresh.finished_at == finished_at
    assert fresh.planned_runs(timezone.now(), 5) == []


def test_a_disabled_task_with_no_slot_before_its_end_is_kept_for_its_operator():
    task = task_with_callable(PATH, schedule=slot_weeks_away(), end_running=in_days(7),
                              enabled=False)
    task.save()
    assert task.finished_at is None
    task.end_running, task.enabled = in_days(60), True
    task.save()
    assert task.next_run is not None and task.finished_at is None


# -- wait_for_schedule=False: only the first run is immediate -----------------------------

def test_editing_a_started_task_that_does_not_wait_keeps_it_on_its_schedule(worker, soon):
    task = task_with_callable(PATH, label='nightly', schedule='0 3 * * *',
                              wait_for_schedule=False)
    task.save()
    assert task.next_run <= timezone.now()  # the first run is at once
    worker.tick(soon)
    assert Call.objects.count() == 1
    task = Task.objects.get(pk=task.pk)
    task.schedule = '0 4 * * *'
    task.save()
    local = timezone.localtime(task.next_run)
    assert task.next_run > soon and (local.hour, local.minute) == (4, 0)
    assert Task.objects.get(pk=task.pk).next_run == task.next_run


def test_re_enabling_a_claimed_task_that_does_not_wait_keeps_it_on_its_schedule(soon):
    task = task_with_callable(PATH, schedule='0 3 * * *', wait_for_schedule=False)
    task.save()
    dispatch.claim_due_tasks(soon)  # its first run is claimed, not yet run
    assert TaskRun.objects.filter(task=task).count() == 1
    for enabled in (False, True):
        task = Task.objects.get(pk=task.pk)
        task.enabled = enabled
        task.save()
    local = timezone.localtime(task.next_run)
    assert task.next_run > soon and (local.hour, local.minute) == (3, 0)


def test_an_edit_before_the_first_run_keeps_that_run_immediate():
    task = task_with_callable(PATH, schedule='0 0 1 1 *', wait_for_schedule=False,
                              start_running=in_days(1))
    task.save()
    later = in_days(2)
    task.start_running = later
    task.save()
    assert task.next_run == later
