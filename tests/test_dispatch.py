"""Ticks becoming runs: once per slot, lifecycle, failures, overlap, full channels, cost."""

import datetime as dt
import logging

import pytest
from channels.message import Message
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sisy import consumers, dispatch, doorbells
from sisy.models import Task, TaskRun, task_with_callable
from tests.conftest import finish_run, take_one, unclaimed_one_off
from tests.testapp import jobs, tasks
from tests.testapp.models import Call, Counter

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures('sql_path')]
MINUTE = dt.timedelta(minutes=1)


def make(func=tasks.record, when=None, **fields):
    """Save a task and put its next run at `when`."""
    task = task_with_callable(func, **fields)
    task.save()
    if when is not None:
        Task.objects.filter(pk=task.pk).update(next_run=when)
    return Task.objects.get(pk=task.pk)


def calls(label=None):
    queryset = Call.objects.all()
    return queryset.filter(label=label).count() if label else queryset.count()


def test_a_due_task_runs_once_per_slot(worker, soon):
    task = make(label='every-minute', when=soon)
    worker.tick(soon)
    worker.tick(soon)  # a duplicate tick, e.g. from a second heartbeat
    assert calls('every-minute') == 1
    task.refresh_from_db()
    assert task.next_run == soon + MINUTE
    assert task.last_run is not None and not task.running and task.last_outcome == 'ok'
    run = TaskRun.objects.get(task=task)
    assert (run.scheduled_for, run.status, run.pid is not None) == (soon, 'ok', True)
    worker.tick(soon + MINUTE)
    assert calls('every-minute') == 2


def test_a_task_is_not_run_before_its_slot(worker, soon):
    make(label='later', when=soon + MINUTE)
    worker.tick(soon)
    assert calls() == 0


def test_missed_slots_run_once_not_once_each(worker, soon):
    task = make(label='missed', when=soon - 30 * MINUTE)
    worker.tick(soon)
    assert calls('missed') == 1
    task.refresh_from_db()
    assert task.next_run == soon + MINUTE


def test_task_function_gets_task_and_message(worker, soon):
    make(tasks.record, label='args', when=soon)
    worker.tick(soon)
    call = Call.objects.get()
    assert call.run_id == TaskRun.objects.get().pk


def test_run_once_runs_and_is_deleted(worker, soon):
    task = Task.run_once(tasks.record)
    worker.tick(soon)
    assert calls('tests.testapp.tasks.record') == 1
    assert not Task.objects.filter(pk=task.pk).exists()
    run = TaskRun.objects.get()
    assert (run.task_id, run.task_label, run.status) == (None, 'tests.testapp.tasks.record', 'ok')
    worker.tick(soon + MINUTE)
    assert calls() == 1


def test_delayed_run_once_waits(worker, soon):
    Task.run_once(tasks.record, delay_until=soon + 5 * MINUTE)
    worker.tick(soon)
    assert calls() == 0
    worker.tick(soon + 5 * MINUTE)
    assert calls() == 1 and Task.objects.count() == 0


def test_iterations_count_down_then_the_task_is_deleted(worker, soon):
    task = Task.run_iterations(tasks.record, iterations=3, label='three', schedule='* * * * *')
    Task.objects.filter(pk=task.pk).update(next_run=soon)
    left = []
    for minute in range(5):
        worker.tick(soon + minute * MINUTE)
        left.append(Task.objects.filter(pk=task.pk).values_list('iterations', flat=True).first())
    assert calls('three') == 3
    assert left == [2, 1, None, None, None]


def test_end_date_wins_over_iterations(worker, soon):
    task = make(label='ends', when=soon, iterations=10, end_running=soon + 90 * dt.timedelta(seconds=1))
    for minute in range(4):
        worker.tick(soon + minute * MINUTE)
    assert calls('ends') == 2
    assert not Task.objects.filter(pk=task.pk).exists()


def test_a_task_past_its_end_does_not_run_and_is_reaped(worker, soon):
    task = make(label='expired', when=soon - 10 * MINUTE)
    Task.objects.filter(pk=task.pk).update(end_running=soon - 5 * MINUTE)  # it ended unrun
    worker.tick(soon)
    assert calls() == 0
    assert not Task.objects.filter(pk=task.pk).exists()


def test_start_running_is_honoured(worker, soon):
    start = soon + 10 * MINUTE
    task = make(label='starts-later', start_running=start)
    assert task.next_run == start
    worker.tick(soon)
    assert calls() == 0
    worker.tick(start)
    assert calls('starts-later') == 1


def test_disabled_task_never_runs(worker, soon):
    make(label='off', when=soon, enabled=False)
    worker.tick(soon)
    assert calls() == 0 and TaskRun.objects.count() == 0


def test_a_task_disabled_after_its_run_was_claimed_does_not_run(worker, soon):
    task = make(label='stopped-in-time', when=soon)
    dispatch.process_tick(soon)
    Task.objects.filter(pk=task.pk).update(enabled=False)
    worker.deliver()
    assert calls() == 0
    assert 'disabled before the run started' in TaskRun.objects.get().error
    assert Task.objects.get(pk=task.pk).running is False


def test_re_enabling_clears_the_reason_and_reschedules(worker, soon):
    task = make(label='fixed-later', when=soon)
    Task.objects.filter(pk=task.pk).update(enabled=False, disabled_reason='Cannot load it',
                                           next_run=soon - 60 * MINUTE)
    task = Task.objects.get(pk=task.pk)
    task.enabled = True
    task.save()
    task = Task.objects.get(pk=task.pk)
    assert task.disabled_reason == '' and task.next_run > timezone.now()


def test_userdata_written_by_the_function_is_kept(worker, soon):
    task = make(tasks.count_in_userdata, when=soon, userdata={'count': 40})
    worker.tick(soon)
    worker.tick(soon + MINUTE)
    assert Task.objects.get(pk=task.pk).userdata == {'count': 42}


def test_a_raising_task_is_recorded_and_the_next_task_still_runs(worker, soon, caplog):
    bad = make(tasks.explode, label='bad', when=soon)
    make(tasks.record, label='good', when=soon)
    with caplog.at_level(logging.ERROR, logger='sisy'):
        worker.tick(soon)
    assert calls('good') == 1
    run = TaskRun.objects.get(task=bad)
    assert run.status == 'error'
    assert 'RuntimeError: boom from a test task' in run.error and 'Traceback' in run.error
    bad.refresh_from_db()
    assert bad.last_outcome == 'error' and bad.enabled and bad.next_run == soon + MINUTE
    assert any('boom' in (record.exc_text or '') for record in caplog.records)


@pytest.mark.parametrize('function, says', [
    (tasks.store_unserializable, 'userdata was not saved'),
    (tasks.store_loop, "userdata['me'] is userdata itself"),  # contains itself: no crash
])
def test_unstorable_userdata_is_an_error_that_keeps_the_old_data(worker, soon, function, says):
    task = make(function, when=soon, userdata={'keep': 1})
    worker.tick(soon)
    run = TaskRun.objects.get()
    assert run.status == 'error' and says in run.error
    assert Task.objects.get(pk=task.pk).userdata == {'keep': 1}


def test_removed_function_disables_the_task_once(worker, soon):
    task = make(label='orphan', when=soon)
    Task.objects.filter(pk=task.pk).update(
        _func_info='{"kind": "function", "module": "tests.testapp.tasks", "qualname": "gone"}')
    worker.tick(soon)
    worker.tick(soon + MINUTE)
    task.refresh_from_db()
    assert not task.enabled
    assert "has no attribute 'gone'" in task.disabled_reason
    assert TaskRun.objects.filter(task=task).count() == 1


def test_deleted_model_instance_disables_the_task(worker, soon):
    counter = Counter.objects.create(name='c')
    task = make(counter.bump, when=soon)
    counter.delete()
    worker.tick(soon)
    task.refresh_from_db()
    assert not task.enabled and 'no longer exists' in task.disabled_reason


def test_instance_method_task_runs_on_the_fetched_row(worker, soon):
    counter = Counter.objects.create(name='c')
    make(counter.bump, when=soon)
    worker.tick(soon)
    worker.tick(soon + MINUTE)
    counter.refresh_from_db()
    assert counter.hits == 2


def test_no_overlap_while_a_run_is_under_way(worker, soon):
    task = make(label='slow', when=soon)
    assert len(dispatch.process_tick(soon)) == 1  # claimed, not yet run
    assert dispatch.process_tick(soon + MINUTE) == []
    worker.deliver()
    assert dispatch.process_tick(soon + 2 * MINUTE) != []
    worker.deliver()
    assert calls('slow') == 2
    assert Task.objects.get(pk=task.pk).running is False


def test_overlap_allowed(worker, soon):
    make(label='overlapping', when=soon, allow_overlap=True)
    assert len(dispatch.process_tick(soon)) == 1
    assert len(dispatch.process_tick(soon + MINUTE)) == 1
    worker.deliver()
    assert calls('overlapping') == 2


def test_a_run_whose_worker_died_is_marked_lost_and_unblocks_the_task(worker, soon, caplog):
    task = make(label='dies', when=soon)
    dispatch.process_tick(soon)
    worker.layer.channel_layer.flush()  # the worker took the message, then died mid-run
    TaskRun.objects.update(status='running', lease_until=timezone.now() - MINUTE, host='gone',
                           pid=99999)  # its lease ended by every clock
    with caplog.at_level(logging.WARNING, logger='sisy'):
        worker.tick(soon + 5 * MINUTE)
    assert list(TaskRun.objects.order_by('pk').values_list('status', flat=True)) == ['lost', 'ok']
    assert 'was lost' in caplog.text
    task.refresh_from_db()
    assert not task.running and task.last_outcome == 'ok'


def test_a_duplicate_run_message_runs_once(worker, soon):
    make(label='dup', when=soon)
    dispatch.process_tick(soon)
    run_id = TaskRun.objects.get().pk
    worker.layer.send('sisy.run_task', {'run_id': run_id})
    worker.deliver()
    assert calls('dup') == 1


def test_more_due_tasks_than_channel_capacity_all_run_once(worker, soon):
    for number in range(25):
        unclaimed_one_off(tasks.record)
    claimed = dispatch.process_tick(soon)
    assert len(claimed) == 25
    # The table is the queue: a few messages wake workers, which take runs from it.
    assert len(worker.pending('sisy.run_task')) == doorbells.PER_TICK
    worker.deliver()
    assert calls() == 25
    assert Call.objects.values('run_id').distinct().count() == 25
    assert Task.objects.count() == 0


def test_a_tick_rings_for_each_claimed_batch_as_soon_as_it_commits(worker, soon, monkeypatch):
    """A burst is claimed in batches: workers that drained the first batch are woken for
    each later one when it commits, not only once the tick has claimed the whole burst."""
    monkeypatch.setattr(dispatch, 'FIRST_BATCH', 2)
    monkeypatch.setattr(dispatch, 'CLAIM_BATCH', 3)
    for number in range(8):
        make(label='due-%d' % number, when=soon)
    waiting_at_each_ring = []
    ring = doorbells.ring

    def noting_ring(now, count):
        waiting_at_each_ring.append(TaskRun.objects.filter(status=TaskRun.PENDING).count())
        return ring(now, count)

    monkeypatch.setattr(doorbells, 'ring', noting_ring)
    dispatch.process_tick(soon)
    # After the batches of 2, 3 and 3 runs, then the tick's own ring at its end.
    assert waiting_at_each_ring == [2, 5, 8, 8]
    worker.deliver()
    assert calls() == 8


def test_runs_whose_messages_were_lost_are_rung_for_by_the_next_tick(worker, soon):
    for number in range(15):
        Task.run_once(tasks.record)
    dispatch.process_tick(soon)
    worker.layer.channel_layer.flush()  # say the channel layer restarted and lost them
    worker.tick(soon + MINUTE)
    assert calls() == 15


def test_a_worker_stops_taking_runs_after_its_drain_time_and_rings_again(worker, soon,
                                                                         monkeypatch):
    from sisy import runner
    monkeypatch.setattr(runner, 'DRAIN_SECONDS', 0)
    for number in range(5):
        Task.run_once(tasks.record)
    dispatch.process_tick(soon)
    worker.layer.channel_layer.flush()
    worker.layer.send('sisy.run_task', {'run_id': TaskRun.objects.order_by('pk')[0].pk})
    channel, content = worker.layer.channel_layer.receive(['sisy.run_task'], block=False)
    assert runner.execute_run(content['run_id'], Message(content, channel, worker.layer)) \
        == ['ok']
    assert len(worker.pending('sisy.run_task')) == 1, 'no message left for the other runs'
    worker.deliver()
    assert calls() == 5


def test_stale_and_malformed_ticks_are_ignored(worker, caplog):
    make(label='any', when=timezone.now() - 10 * MINUTE)
    old = (timezone.now() - 5 * MINUTE).timestamp()
    with caplog.at_level(logging.INFO, logger='sisy'):
        worker.layer.send('sisy.heartbeat', {'time': old})
        worker.layer.send('sisy.heartbeat', {'time': 'noon'})
        worker.layer.send('sisy.heartbeat', {})
        worker.deliver(channels=['sisy.heartbeat'])
    assert TaskRun.objects.count() == 0
    assert 'stale tick' in caplog.text and "without a finite \"time\"" in caplog.text


def test_a_fresh_tick_message_dispatches(worker):
    make(label='fresh', when=timezone.now() - MINUTE)
    worker.layer.send('sisy.heartbeat', {'time': timezone.now().timestamp()})
    worker.deliver(channels=['sisy.heartbeat', 'sisy.run_task', 'sisy.kill_task'])
    assert calls('fresh') == 1


def test_reaper_only_deletes_finished_tasks(worker):
    alive = make(label='alive')
    finished = make(label='finished')
    Task.objects.filter(pk=finished.pk).update(next_run=None, finished_at=timezone.now())
    for task_id in (alive.pk, finished.pk, 'junk', None):
        worker.layer.send('sisy.kill_task', {'task_id': task_id})
    worker.deliver()
    assert list(Task.objects.values_list('label', flat=True)) == ['alive']


def test_one_reaper_message_clears_a_backlog_of_finished_tasks(worker):
    kept = make(label='kept')
    done = [make(label='done-%d' % n) for n in range(30)]
    Task.objects.filter(label__startswith='done').update(next_run=None,
                                                          finished_at=timezone.now())
    assert dispatch.reap(done[0].pk) == 30
    assert list(Task.objects.values_list('pk', flat=True)) == [kept.pk]


def test_the_reaper_leaves_a_task_whose_last_run_has_not_run_yet(worker, soon):
    """A run that finished while a tick claimed the last slot left `running` False.

    On PostgreSQL the finishing run's write waits for the claim and then
    clears the flag from what it saw before (tests/test_concurrency.py shows
    it); here the same steps are taken one after the other.
    """
    task = make(label='overlapping', when=soon, allow_overlap=True, iterations=2)
    dispatch.claim_due_tasks(soon)
    first = take_one(soon, dt.timedelta(minutes=5))
    dispatch.claim_due_tasks(soon + MINUTE)  # the last slot
    finish_run(first, TaskRun.OK, now=soon + MINUTE)
    Task.objects.filter(pk=task.pk).update(running=False)  # the finishing run's stale view
    worker.layer.channel_layer.flush()
    dispatch.send_finished_to_reaper()
    worker.deliver()  # nothing to reap yet
    assert Task.objects.filter(pk=task.pk).exists()
    doorbells.ring(soon + MINUTE, 1)
    worker.deliver()
    assert list(TaskRun.objects.order_by('pk').values_list('status', flat=True)) == ['ok', 'ok']
    assert calls('overlapping') == 1
    assert not Task.objects.exists()


def test_a_stuck_task_is_repaired_while_a_deleted_task_still_has_a_run(worker, soon):
    """A run whose task was deleted (no task any more) must not hide the others from repair."""
    deleted = make(label='deleted', when=soon)
    dispatch.claim_due_tasks(soon)
    take_one(soon, dt.timedelta(minutes=5))  # its run is under way...
    Task.objects.filter(pk=deleted.pk).delete()  # ...when an operator deletes the task
    stuck = make(label='stuck', when=soon + MINUTE)
    Task.objects.filter(pk=stuck.pk).update(running=True)  # as after a crash
    worker.tick(soon + MINUTE)
    assert calls('stuck') == 1


def test_bad_run_messages_do_not_crash_the_consumer(caplog):
    class FakeMessage:
        content = {'run_id': 'DROP TABLE'}
    consumers.run_task(FakeMessage())
    assert 'without an integer "run_id"' in caplog.text


@pytest.mark.parametrize('sql_path', ['statements'], indirect=True)  # the ORM path is per row
def test_tick_cost_follows_due_tasks_not_table_size(soon):
    far = soon + dt.timedelta(days=365)
    info = task_with_callable(tasks.record)._func_info
    Task.objects.bulk_create(
        [Task(label='idle-%d' % n, _func_info=info, next_run=far) for n in range(49950)] +
        [Task(label='due-%d' % n, _func_info=info, next_run=soon) for n in range(50)],
        batch_size=400)
    with CaptureQueriesContext(connection) as queries:
        claimed = dispatch.claim_due_tasks(soon)
    assert len(claimed) == 50
    writes = [q['sql'] for q in queries.captured_queries
              if q['sql'].startswith(('UPDATE', 'INSERT', 'WITH'))]
    assert len(writes) <= 2  # the batch's claims and its run records, whatever its size
    assert Task.objects.filter(next_run=far).count() == 49950
    assert Task.objects.filter(running=True).count() == 50
    with connection.cursor() as cursor:
        sql, params = Task.objects.due(soon).query.sql_with_params()
        if connection.vendor == 'sqlite':
            cursor.execute('EXPLAIN QUERY PLAN ' + sql, params)
            plan = ' '.join(str(row) for row in cursor.fetchall())
            assert 'sisy_task_due' in plan
        elif connection.vendor == 'postgresql':
            cursor.execute('ANALYZE sisy_task')
            cursor.execute('EXPLAIN ' + sql, params)
            plan = ' '.join(row[0] for row in cursor.fetchall())
            assert 'sisy_task_due' in plan and 'Seq Scan' not in plan


# -- immediate runs: claimed in the caller's write, rung for when it commits -----------

IMMEDIATE = ['run_once', 'run_iterations', 'run_now']


class Rollback(Exception):
    pass


def nightly():
    """A task whose next slot is hours away: 'Run now' is the only way it runs soon."""
    return make(label='nightly', schedule='30 0 * * *')


def immediately(kind, existing=None):
    """Make a run due now the way `kind` does (`existing`: run_now's task); return the task."""
    if kind == 'run_once':
        return Task.run_once(tasks.record)
    if kind == 'run_iterations':
        return Task.run_iterations(tasks.record, iterations=3, label='thrice',
                                   schedule='0 3 * * *', run_immediately=True)
    assert dispatch.run_now(Task.objects.filter(pk=existing.pk), timezone.now()) == 1
    return existing


def doorbells_on(worker, channel='sisy.run_task'):
    return [content for _, content in worker.pending(channel)]


@pytest.mark.parametrize('kind', IMMEDIATE)
def test_an_immediate_run_is_claimed_by_the_call_and_a_tick_at_that_moment_claims_no_more(
        kind, worker):
    existing = nightly() if kind == 'run_now' else None
    task = immediately(kind, existing)
    [run] = TaskRun.objects.all()  # pending right after the call: no tick was needed
    assert (run.task_id, run.status) == (task.pk, TaskRun.PENDING)
    now = timezone.now()
    assert dispatch.claim_due_tasks(now) == []
    worker.tick(now)  # a heartbeat's tick at the same moment, then the worker
    worker.tick(now)
    assert calls() == 1 and TaskRun.objects.count() == 1
    assert TaskRun.objects.get().status == TaskRun.OK


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize('kind', IMMEDIATE)
def test_an_immediate_run_rolled_back_is_neither_claimed_nor_rung_for(kind, worker):
    existing = nightly() if kind == 'run_now' else None
    slot = existing.next_run if existing else None
    with pytest.raises(Rollback):
        with transaction.atomic():
            immediately(kind, existing)
            assert TaskRun.objects.count() == 1  # claimed in the caller's transaction...
            raise Rollback
    assert TaskRun.objects.count() == 0  # ...so nothing is left of it
    assert doorbells_on(worker) == []
    if existing:
        assert Task.objects.get(pk=existing.pk).next_run == slot
    else:
        assert Task.objects.count() == 0
    worker.tick(timezone.now())
    assert calls() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize('kind', IMMEDIATE)
def test_an_immediate_run_gets_one_doorbell_naming_it_when_its_transaction_commits(
        kind, worker):
    existing = nightly() if kind == 'run_now' else None
    with transaction.atomic():
        immediately(kind, existing)
        assert doorbells_on(worker) == [], 'rung before the commit'
    [run] = TaskRun.objects.all()
    assert doorbells_on(worker) == [{'run_id': run.pk}]
    worker.deliver()
    assert calls() == 1 and TaskRun.objects.get().status == TaskRun.OK


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize('kind', IMMEDIATE)
def test_an_immediate_run_outside_a_transaction_is_rung_for_at_once(kind, worker):
    existing = nightly() if kind == 'run_now' else None
    immediately(kind, existing)
    assert doorbells_on(worker) == [{'run_id': TaskRun.objects.get().pk}]


@pytest.mark.django_db(transaction=True)
def test_a_job_is_rung_for_when_its_transaction_commits_and_not_if_it_rolls_back(worker):
    with pytest.raises(Rollback):
        with transaction.atomic():
            jobs.add.enqueue(1, 2)
            raise Rollback
    assert TaskRun.objects.count() == 0 and doorbells_on(worker) == []
    with transaction.atomic():
        result = jobs.add.enqueue(1, 2)
        assert doorbells_on(worker) == []
    assert doorbells_on(worker) == [{'run_id': int(result.id)}]
    jobs.add.enqueue(3, 4)  # outside a transaction: at once
    assert len(doorbells_on(worker)) == 2
    worker.deliver()
    assert sorted(Call.objects.values_list('run_id', flat=True)) == [3, 7]


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_run_after_has_passed_is_rung_for_at_once(worker):
    passed = jobs.add.using(run_after=timezone.now() - dt.timedelta(seconds=1)).enqueue(1, 1)
    now = jobs.add.using(run_after=dt.timedelta(0)).enqueue(2, 2)
    later = jobs.add.using(run_after=dt.timedelta(minutes=5)).enqueue(3, 3)
    assert doorbells_on(worker) == [{'run_id': int(passed.id)}, {'run_id': int(now.id)}]
    worker.deliver()
    assert sorted(Call.objects.values_list('run_id', flat=True)) == [2, 4]
    assert TaskRun.objects.get(pk=later.id).status == TaskRun.PENDING


@pytest.mark.django_db(transaction=True)
@override_settings(SISY_QUEUES=['default', 'emails'])
def test_a_run_on_a_queue_is_rung_for_on_that_queues_channel(worker):
    result = jobs.add.using(queue_name='emails').enqueue(1, 2)
    task = make(label='mailing', schedule='30 0 * * *', queue_name='emails')
    dispatch.run_now(Task.objects.filter(pk=task.pk), timezone.now())
    run = TaskRun.objects.get(task=task)
    assert run.queue_name == 'emails'
    assert doorbells_on(worker, 'sisy.run_task.emails') == [
        {'run_id': int(result.id)}, {'run_id': run.pk}]
    assert doorbells_on(worker) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize('delay, rung', [(0, True), (60, False)])
def test_a_retry_due_at_once_is_rung_for_when_the_failure_is_recorded(delay, rung, worker):
    task = unclaimed_one_off(tasks.explode, retries=1, retry_delay=delay)
    dispatch.claim_due_tasks(timezone.now())
    first = take_one(timezone.now(), MINUTE)
    worker.layer.channel_layer.flush()
    assert finish_run(first, TaskRun.ERROR, 'boom')
    retry = TaskRun.objects.get(task=task, attempt=2)
    assert doorbells_on(worker) == ([{'run_id': retry.pk}] if rung else [])


@pytest.mark.django_db(transaction=True)
def test_a_jobs_retry_is_rung_for_when_the_failure_commits_not_before(worker):
    job_id = int(jobs.always_fails.enqueue().id)  # retries=2, retry_delay=0
    job_run = take_one(timezone.now(), MINUTE, job_id)
    worker.layer.channel_layer.flush()
    with transaction.atomic():
        assert finish_run(job_run, TaskRun.ERROR, 'boom')
        assert doorbells_on(worker) == []
    retry = TaskRun.objects.get(first_attempt=job_id)
    assert (retry.attempt, retry.status) == (2, TaskRun.PENDING)
    assert doorbells_on(worker) == [{'run_id': retry.pk}]


@override_settings(SISY_QUEUES=['default', 'emails'])
def test_a_worker_woken_on_a_queues_channel_drains_only_that_queue(worker):
    emails = [int(jobs.label_call.using(queue_name='emails').enqueue('email-%d' % n).id)
              for n in range(3)]
    for n in range(3):
        jobs.label_call.enqueue('default-%d' % n)
    consumers.run_task(Message({'run_id': emails[0]}, 'sisy.run_task.emails', worker.layer))
    assert sorted(Call.objects.values_list('label', flat=True)) == [
        'email-0', 'email-1', 'email-2']
    assert TaskRun.objects.filter(queue_name='default', status=TaskRun.PENDING).count() == 3
    # A doorbell for a run another worker took already wakes this one for its queue's next.
    consumers.run_task(Message({'run_id': emails[0]}, 'sisy.run_task', worker.layer))
    assert Call.objects.count() == 6


def test_a_tick_rings_for_the_listed_queues_only(worker, settings, soon):
    settings.SISY_QUEUES = ['default', 'emails']
    left = jobs.add.using(queue_name='emails').enqueue(1, 1)
    settings.SISY_QUEUES = ['default']  # the emails workers were retired
    dispatch.process_tick(soon)
    assert worker.pending('sisy.run_task') == []
    assert worker.pending('sisy.run_task.emails') == []
    settings.SISY_QUEUES = ['default', 'emails']
    dispatch.process_tick(soon)
    assert [content['run_id'] for content in doorbells_on(worker, 'sisy.run_task.emails')] == [
        int(left.id)]
