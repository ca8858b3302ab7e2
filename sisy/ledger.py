"""The slot ledger: why a task's scheduled slots did not start on time, in words.

Two sources: SlotEvent rows, written when a claim comes late (no tick came,
or the previous run was still going), when a slot was moved by a
daylight-saving gap, and when a task is enabled again after slots passed
while it was disabled; and the runs themselves, for starts that waited for a
worker and for retries. Each event is one row however many slots it covers.
"""

import datetime as dt

from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from sisy import retries, storage
from sisy.conf import setting
from sisy.describe import local_time
from sisy.models import SlotEvent, TaskRun, TickRecord
from sisy.schedule import count_slots, skipped_wall_time

# A claim or a start this much later than its slot (in heartbeat periods) is late.
LATE_PERIODS = 1.5


def late_after():
    """How late a claim or start may be before the ledger says so."""
    return dt.timedelta(seconds=LATE_PERIODS * float(setting('SISY_HEARTBEAT_FREQUENCY')))


def is_late(task, when):
    return task.next_run is not None and when - task.next_run > late_after()


def note_claims(tasks, when, runs):
    """Write the events of slots just claimed at `when`: late claims and DST moves.

    `tasks` are the tasks claimed (with the columns of a claim), `runs` the id
    of the pending run each claim made, by task id. A batch costs the same few
    statements whatever its size, and none when no slot was late or moved.
    """
    zone = timezone.get_default_timezone()
    events = []
    for task in tasks:
        missing = skipped_wall_time(task.get_schedule(), task.next_run, zone)
        if missing is not None:
            events.append(_event(task, SlotEvent.DST_MOVED, task.next_run, task.next_run, 1, when,
                                 '%s does not exist on %s; ran at %s' % (
                                     missing.strftime('%H:%M'), missing.strftime('%a %d %b'),
                                     local_time(task.next_run, zone))))
    late = [task for task in tasks if is_late(task, when)]
    if late:
        events += _late_events(late, when, runs, zone)
    if events:
        SlotEvent.objects.bulk_create(events, batch_size=_insert_batch(events))


def _late_events(tasks, when, runs, zone):
    """The events of late claims, told apart with two queries for the whole batch."""
    previous_tick = TickRecord.objects.aggregate(last=Max('tick'))['last']
    holders = _holders([runs[task.pk] for task in tasks])
    events, counted = [], {}
    for task in tasks:
        slot = task.next_run
        merged, last = 0, None
        if task.iterations != 1:  # a one-off job stands for its one slot only
            key = (task.schedule, slot)
            if key not in counted:  # tasks due at once mostly share a few schedules
                counted[key] = count_slots(task.get_schedule(), slot, when, zone)
            merged, last = counted[key]
        holder = holders.get(task.pk)
        if holder is not None:
            kind = SlotEvent.HELD_BACK
            detail = 'the previous run (slot %s) was still going until %s' % (
                local_time(holder[0], zone), local_time(holder[1], zone))
        elif previous_tick is None or previous_tick < slot:
            kind = SlotEvent.NO_TICK
            detail = 'no tick between %s and %s' % (
                local_time(previous_tick, zone) if previous_tick else 'the start',
                local_time(when, zone))
        else:
            kind = SlotEvent.LATE_CLAIM
            detail = 'it was not due when the ticks came (edited, enabled or run by hand?)'
        events.append(_event(task, kind, slot, last or slot, 1 + merged, when, detail))
    return events


def _holders(run_ids):
    """For the tasks of these new runs, the earlier run still going at each one's slot.

    One query: {task id: (its slot, when it finished)} of the run that finished
    last after the new run's slot, for the tasks that had one. Each lookup is a
    short range of the (task, finished_at) index, however long the history.
    """
    earlier = (TaskRun.objects.filter(task_id=OuterRef('task_id'),
                                      scheduled_for__lt=OuterRef('scheduled_for'),
                                      finished_at__gt=OuterRef('scheduled_for'))
               .order_by('-finished_at', '-pk'))
    rows = (TaskRun.objects.filter(pk__in=run_ids).order_by()
            .annotate(held_slot=Subquery(earlier.values('scheduled_for')[:1]),
                      held_until=Subquery(earlier.values('finished_at')[:1]))
            .values_list('task_id', 'held_slot', 'held_until'))
    return {task_id: (slot, until) for task_id, slot, until in rows if until is not None}


def _insert_batch(rows):
    """All the rows in one INSERT where the database takes that many parameters.

    Django splits inserts on SQLite at 999 parameters, a limit of SQLite before
    3.32; the SQLite of the fast statements takes 32,766.
    """
    return len(rows) if storage.backend().fast_sql else None


def _event(task, kind, first, last, slots, ran_at, detail):
    return SlotEvent(task_id=task.pk, task_label=task.label, kind=kind, first_slot=first,
                     last_slot=last, slots=slots, ran_at=ran_at, detail=detail)


def on_task_reenabled(sender, task, now, **ignored):
    """Receiver of signals.task_reenabled (connected in apps.ready)."""
    note_reenabled(task, now)


def note_reenabled(task, now):
    """A task enabled again: record the slots that passed while it was disabled."""
    if task.next_run is None or task.next_run >= now:
        return
    zone = timezone.get_default_timezone()
    schedule = task.get_schedule()
    missed, last = count_slots(schedule, task.next_run, now, zone)
    SlotEvent.objects.create(
        task_id=task.pk, task_label=task.label, kind=SlotEvent.DISABLED,
        first_slot=task.next_run, last_slot=last or task.next_run, slots=1 + missed,
        detail='the task was disabled; it was enabled again at %s' % local_time(now, zone))


def entries(task, count=20):
    """The newest `count` ledger lines of `task`, newest first: (slot, sentence) pairs."""
    zone = timezone.get_default_timezone()
    lines = [(event.first_slot, describe_event(event, zone))
             for event in SlotEvent.objects.filter(task=task)[:count]]
    late = late_after()
    for run in TaskRun.objects.filter(task=task).select_related('task')[:count]:
        text = describe_run(run, late, zone)
        if text:
            lines.append((run.scheduled_for, text))
    lines.sort(key=lambda line: line[0], reverse=True)
    return lines[:count]


def describe_event(event, zone):
    slot = local_time(event.first_slot, zone)
    span = ('%d slots, %s to %s' % (event.slots, slot, local_time(event.last_slot, zone))
            if event.slots > 1 else slot)
    ran = '; ran once at %s' % local_time(event.ran_at, zone) if event.ran_at else ''
    if event.kind == SlotEvent.NO_TICK:
        return '%s did not run on time: %s%s (%s)' % (slot, event.detail, ran, span)
    if event.kind == SlotEvent.HELD_BACK:
        return '%s was held back: %s%s (%s)' % (slot, event.detail, ran, span)
    if event.kind == SlotEvent.DST_MOVED:
        return 'moved by daylight saving: %s' % event.detail
    if event.kind == SlotEvent.DISABLED:
        return '%s skipped: %s' % (span, event.detail)
    return '%s was claimed late: %s%s' % (slot, event.detail, ran)


def describe_run(run, late, zone):
    """A sentence for a run that did not go as scheduled, or '' for one that did."""
    slot = local_time(run.scheduled_for, zone)
    if run.attempt > 1:
        allowed = None
        if run.task_id is not None:
            allowed = retries.attempts_allowed(run.task)
            if run.attempt > allowed:  # a lost one-off's extra attempts
                allowed = retries.attempts_allowed(run.task, lost_final_run=True)
        return '%s: attempt %d%s (%s)' % (slot, run.attempt,
                                           ' of %d' % allowed if allowed else '',
                                           run.get_status_display())
    if run.status == TaskRun.SKIPPED:
        return '%s did not run: %s' % (slot, run.error or 'skipped')
    if run.started_at is not None and run.started_at - run.scheduled_for > late \
            and run.created_at - run.scheduled_for <= late:
        return '%s started %.1f s late: it waited for a free worker' % (
            slot, (run.started_at - run.scheduled_for).total_seconds())
    return ''
