"""The slot ledger: why slots did not start on time, told in words."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from sisy import dispatch, ledger
from sisy.models import SlotEvent, Task, TaskRun, TickRecord, task_with_callable
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


def every_minute(label, when, **fields):
    task = task_with_callable(tasks.record, label=label, schedule='* * * * *', **fields)
    task.save()
    Task.objects.filter(pk=task.pk).update(next_run=when)
    return Task.objects.get(pk=task.pk)


def texts(task):
    return [text for _, text in ledger.entries(task)]


def test_slots_missed_while_no_tick_came_are_one_event_with_their_count(soon):
    task = every_minute('nightly-ish', soon)
    TickRecord.objects.create(worker='w', tick=soon - MINUTE, processed_at=soon - MINUTE)
    dispatch.claim_due_tasks(soon + 10 * MINUTE)
    [event] = SlotEvent.objects.all()
    assert (event.kind, event.slots) == (SlotEvent.NO_TICK, 11)
    assert event.first_slot == soon and event.last_slot == soon + 10 * MINUTE
    [text] = texts(task)
    assert 'did not run on time: no tick between' in text and 'ran once at' in text
    assert '11 slots' in text


def test_a_slot_held_back_by_the_previous_run_says_so(soon):
    task = every_minute('long-runner', soon)
    TaskRun.objects.create(task=task, task_label=task.label, scheduled_for=soon - MINUTE,
                           status='ok', finished_at=soon + 3 * MINUTE)
    TickRecord.objects.create(worker='w', tick=soon + 3 * MINUTE, processed_at=soon)
    dispatch.claim_due_tasks(soon + 3 * MINUTE + dt.timedelta(seconds=1))
    [event] = SlotEvent.objects.all()
    assert event.kind == SlotEvent.HELD_BACK and event.slots == 4
    assert 'was held back: the previous run' in texts(task)[0]


def test_an_on_time_claim_writes_nothing(soon):
    every_minute('punctual', soon)
    dispatch.claim_due_tasks(soon)
    assert not SlotEvent.objects.exists()


def test_a_slot_moved_by_a_daylight_saving_gap_is_noted(settings):
    settings.TIME_ZONE = 'Europe/London'  # clocks go from 01:00 to 02:00 on 28 March 2027
    task = task_with_callable(tasks.record, label='half-past-one', schedule='30 1 * * *',
                              start_running=dt.datetime(2027, 3, 27, 12, tzinfo=dt.timezone.utc))
    task.save()
    slot = task.next_run
    assert slot == dt.datetime(2027, 3, 28, 1, 0, tzinfo=dt.timezone.utc)  # 02:00 BST
    dispatch.claim_due_tasks(slot)
    [event] = SlotEvent.objects.all()
    assert event.kind == SlotEvent.DST_MOVED
    assert '01:30 does not exist on Sun 28 Mar; ran at Sun 2027-03-28 02:00:00 BST' in texts(task)[0]


def test_slots_skipped_while_disabled_are_counted_when_enabled_again():
    now = timezone.now()
    task = every_minute('paused-by-hand', now - 10 * MINUTE, enabled=False)
    task.enabled = True
    task.save()
    [event] = SlotEvent.objects.all()
    assert event.kind == SlotEvent.DISABLED and event.slots in (10, 11)
    assert 'skipped: the task was disabled' in texts(task)[0]


def test_late_starts_and_retries_are_read_from_the_runs(soon, settings):
    settings.SISY_HEARTBEAT_FREQUENCY = 1  # late means 1.5 s after the slot
    task = every_minute('busy', soon, retries=3)
    TaskRun.objects.create(task=task, task_label='busy', scheduled_for=soon, status='ok',
                           started_at=soon + dt.timedelta(seconds=30))
    TaskRun.objects.filter(task=task).update(created_at=soon)
    TaskRun.objects.create(task=task, task_label='busy', scheduled_for=soon + MINUTE,
                           status='pending', attempt=2)
    found = texts(task)
    assert any('started 30.0 s late: it waited for a free worker' in text for text in found)
    assert any('attempt 2 of 4 (waiting for a worker)' in text for text in found)


def test_sisy_tasks_shows_the_ledger(soon):
    every_minute('shown', soon)
    dispatch.claim_due_tasks(soon + 5 * MINUTE)
    out = StringIO()
    call_command('sisy_tasks', 'shown', '--runs', '5', stdout=out)
    assert 'slots that did not start on time:' in out.getvalue()
    assert 'did not run on time' in out.getvalue()


def test_the_admin_task_page_shows_the_ledger(client, admin_user, soon):
    task = every_minute('in-admin', soon)
    dispatch.claim_due_tasks(soon + 5 * MINUTE)
    client.force_login(admin_user)
    page = client.get('/admin/sisy/task/%d/change/' % task.pk).content.decode()
    assert 'slots that did not start on time' in page.lower()
    assert 'did not run on time: no tick between' in page
