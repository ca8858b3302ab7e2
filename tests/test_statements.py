"""What the run path costs in database statements: per batch, on a worker and on a tick.

The counts leave out transaction control (BEGIN, SAVEPOINT, RELEASE), which
is not a round trip with PostgreSQL's driver and is one cheap call on SQLite.
"""

import contextlib
import datetime as dt
import re

import pytest
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sisy import dispatch, runner, storage
from sisy.models import SlotEvent, Task, TaskRun, TickRecord, task_with_callable
from tests.conftest import take_one
from tests.testapp import jobs, tasks

pytestmark = pytest.mark.django_db(transaction=True)

CONTROL = ('BEGIN', 'SAVEPOINT', 'RELEASE SAVEPOINT')
BACKLOG = 100


def statements(captured):
    return [query['sql'] for query in captured.captured_queries
            if not query['sql'].startswith(CONTROL)]


@contextlib.contextmanager
def counting_commits():
    """Count the transactions that commit: atomic blocks, and writes made in autocommit."""
    count = [0]

    class NotingCursor(CursorDebugWrapper):
        def execute(self, sql, params=None):
            if not (connection.in_atomic_block or sql.startswith(CONTROL + ('SELECT',))):
                count[0] += 1  # a write outside a transaction commits on its own
            return super().execute(sql, params)

    real_commit = connection.commit

    def commit():
        count[0] += 1
        real_commit()

    connection.commit = commit
    connection.make_debug_cursor = lambda cursor: NotingCursor(cursor, connection)
    forced, connection.force_debug_cursor = connection.force_debug_cursor, True
    try:
        yield count
    finally:
        del connection.commit, connection.make_debug_cursor
        connection.force_debug_cursor = forced


def due_tasks(kind, count, when):
    for number in range(count):
        if kind == 'one-off':  # as run_once saves it, before it claims the slot at once
            task_with_callable(tasks.count_in_userdata, iterations=1,
                               wait_for_schedule=False).save()
        else:
            task = task_with_callable(tasks.count_in_userdata, label='every-minute-%d' % number,
                                      schedule='* * * * *')
            task.save()
            Task.objects.filter(pk=task.pk).update(next_run=when)


def takes(captured):
    return [sql for sql in statements(captured) if "SET status = 'running'" in sql]


@pytest.mark.parametrize('kind, per_batch', [('recurring', 2), ('one-off', 4)])
def test_runs_cost_a_few_statements_per_batch_on_the_worker(kind, per_batch, soon, monkeypatch):
    monkeypatch.setattr(runner.RunBatch, 'pace', None)  # no memory of earlier tests' runs
    due_tasks(kind, BACKLOG, soon)
    run_ids = dispatch.claim_due_tasks(soon)
    with CaptureQueriesContext(connection) as captured, counting_commits() as commits:
        outcomes = runner.execute_run(run_ids[0], None)  # takes the rest from the table too
    assert outcomes == ['ok'] * BACKLOG
    # The run the message named, then batches of 1, 2, 4, 8, 16, 25, 25 and the 18
    # left, then a take that finds the table empty.
    assert len(takes(captured)) == 10, [sql[:60] for sql in takes(captured)]
    # Before each later take, the batch before it is recorded in one transaction: the
    # runs' outcomes and their tasks' state (2 statements), plus 2 to delete the
    # one-off tasks that have finished.
    assert len(statements(captured)) <= 10 + 9 * per_batch, statements(captured)
    assert commits[0] == 10 + 9


def test_a_backlog_of_jobs_costs_the_worker_what_cron_runs_cost(monkeypatch):
    monkeypatch.setattr(runner.RunBatch, 'pace', None)
    job_ids = [int(jobs.echo.enqueue(number).id) for number in range(BACKLOG)]
    with CaptureQueriesContext(connection) as captured, counting_commits() as commits:
        outcomes = runner.execute_run(job_ids[0], None)
    assert outcomes == ['ok'] * BACKLOG
    assert len(takes(captured)) == 10, [sql[:60] for sql in takes(captured)]
    # Before each later take, the batch before it is recorded in one statement: its
    # runs' outcomes and return values (a job has no task to settle). Cron runs cost
    # 2 a batch, one-off tasks 4 (test_runs_cost_a_few_statements_per_batch_on_the_worker).
    assert len(statements(captured)) <= 10 + 9 * 1, statements(captured)
    assert commits[0] == 10 + 9
    assert TaskRun.objects.filter(status='ok').count() == BACKLOG


def test_enqueue_costs_one_statement_outside_a_transaction():
    with CaptureQueriesContext(connection) as captured, counting_commits() as commits:
        jobs.add.enqueue(1, 2)
    assert len(statements(captured)) == 1, statements(captured)
    assert re.match(r"INSERT INTO \W?sisy_taskrun\W", statements(captured)[0])
    assert commits[0] == 1


@pytest.mark.parametrize('job', [jobs.add, jobs.add.using(run_after=dt.timedelta(minutes=5))],
                         ids=['now', 'later'])
def test_enqueue_in_a_transaction_costs_at_most_two_statements_and_commits_nothing(job):
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured, counting_commits() as commits:
            job.enqueue(1, 2)
        assert commits[0] == 0
    everything = [query['sql'] for query in captured.captured_queries]
    assert not [sql for sql in everything if sql.startswith(CONTROL + ('COMMIT',))], everything
    assert len(statements(captured)) <= 2, statements(captured)
    assert TaskRun.objects.count() == 1


@pytest.mark.parametrize('size', [10, 400])
def test_a_claimed_batch_costs_three_statements_whatever_its_size(size, soon):
    due_tasks('recurring', size, soon)
    with CaptureQueriesContext(connection) as captured:
        claimed = dispatch.claim_due_tasks(soon)
    assert len(claimed) == size
    batches = 1 if size < dispatch.FIRST_BATCH else 1 + size // dispatch.CLAIM_BATCH + 1
    # Per batch: read the due tasks, claim them and create their runs (one statement on
    # PostgreSQL, two on SQLite); a last, empty read ends the loop when a batch was full.
    assert len(statements(captured)) <= 3 * batches + 1, statements(captured)


@pytest.mark.parametrize('kind', ['recurring', 'one-off'])
@pytest.mark.parametrize('size', [10, 400])
def test_late_claims_cost_three_more_statements_per_batch_whatever_their_number(
        kind, size, soon, sql_path):
    """The first tick after an outage (or a burst of one-off jobs) claims late: the
    ledger tells every late slot apart with a query for the batch, not one per task."""
    due_tasks(kind, size, soon)
    Task.objects.update(next_run=soon)
    held = Task.objects.order_by('pk').first()
    TaskRun.objects.create(task=held, task_label=held.label, scheduled_for=soon - dt.timedelta(
        minutes=1), status=TaskRun.OK, finished_at=soon + dt.timedelta(minutes=30))
    TickRecord.objects.create(worker='w', tick=soon - dt.timedelta(minutes=1), processed_at=soon)
    with CaptureQueriesContext(connection) as captured:
        claimed = dispatch.claim_due_tasks(soon + dt.timedelta(hours=1))
    assert len(claimed) == size
    kinds = list(SlotEvent.objects.order_by('task_id').values_list('kind', flat=True))
    assert kinds == [SlotEvent.HELD_BACK] + [SlotEvent.NO_TICK] * (size - 1)
    batches = 1 if size < dispatch.FIRST_BATCH else 1 + size // dispatch.CLAIM_BATCH + 1
    if sql_path == 'portable':
        return  # the portable claim itself costs two statements a task
    # Per batch: the claim's three, then the last tick, the runs that held slots
    # back, and the events in one insert.
    assert len(statements(captured)) <= 6 * batches + 1, statements(captured)


def test_an_sqlite_without_returning_gets_the_portable_path(monkeypatch):
    """Before 3.35 SQLite has no UPDATE ... RETURNING: the ORM does the lifecycle's writes."""
    monkeypatch.setattr(storage.sqlite3, 'sqlite_version_info', (3, 34, 1))
    assert storage.choose().fast_sql is (connection.vendor == 'postgresql')
    monkeypatch.setattr(storage.sqlite3, 'sqlite_version_info', storage.SQLITE_RETURNING)
    assert storage.choose().fast_sql is True


def test_a_doorbell_whose_run_was_taken_costs_one_take_for_the_next(monkeypatch):
    """Workers woken for runs another worker's drain already took (a burst of jobs
    arriving one by one) find the next run waiting with the same one statement."""
    monkeypatch.setattr(runner.RunBatch, 'pace', None)
    first, second = jobs.add.enqueue(1, 1), jobs.add.enqueue(2, 2)
    take_one(timezone.now(), dt.timedelta(minutes=1), int(first.id))  # another worker's
    with CaptureQueriesContext(connection) as captured:
        outcomes = runner.execute_run(int(first.id), None)
    assert outcomes == ['ok']
    assert second.refresh() is None and second.status == 'SUCCESSFUL'
    # The take that got the second run, then the one that found the table empty.
    assert len(takes(captured)) == 2, takes(captured)
