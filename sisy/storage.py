"""Storage: the statements of the run lifecycle, one method per transition, per database.

Three drivers with the same methods, chosen once per database by `backend()`:

- PortableStorage: the ORM, one row at a time; any database Django supports,
  and SQLite before 3.35.
- SQLiteStorage (SQLite 3.35 and later): each batch in one statement with
  `UPDATE ... RETURNING` over a `VALUES` list; a run is taken with its task as
  a JSON array. Writers take turns on SQLite, so no row locks are needed.
- PostgreSQLStorage: the same statements with PostgreSQL's casts; runs are
  taken with `FOR UPDATE SKIP LOCKED`, so workers never wait on each other's
  rows, and leases are written and judged by the database's clock.

Every write is conditional on the state its caller believes the row is in, and
returns what it changed, so the caller knows what it won. The methods neither
open nor commit transactions: the lifecycle (sisy.lifecycle) decides those.
"""

import collections
import json
import sqlite3

import django
from django.db import connection
from django.db.models import DateTimeField, Exists, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from sisy.models import Task, TaskRun

RUN = TaskRun._meta.db_table
TASK = Task._meta.db_table
RUN_COLUMNS = [field.column for field in TaskRun._meta.concrete_fields]
TASK_COLUMNS = [field.column for field in Task._meta.concrete_fields]
RUN_NAMES = [field.attname for field in TaskRun._meta.concrete_fields]
PRIORITY = RUN_NAMES.index('priority')  # its place in a row of RUN_COLUMNS
TASK_NAMES = [field.attname for field in Task._meta.concrete_fields]
# The first SQLite with UPDATE ... RETURNING (2021); older ones take the ORM path.
SQLITE_RETURNING = (3, 35, 0)
# The status words as the SQL statements spell them.
WORDS = {'pending': TaskRun.PENDING, 'running': TaskRun.RUNNING}

#: A claim of one task's slot: the slot the claimer saw, the next run after it
#: (None: no more), when the task finished (None: not yet), and whether to
#: count an iteration down.
Claim = collections.namedtuple(
    'Claim', 'task_id label slot following finished_at decrement priority queue_name')
#: How one run ended, as written to its record (return_value: JSON text, '' for none).
Finish = collections.namedtuple(
    'Finish', 'run_id status error started_at finished_at duration return_value')
#: What a task keeps after its runs ended: None leaves that column as it is.
Settlement = collections.namedtuple('Settlement', 'task_id outcome last_run userdata')


def database_clock():
    """Whether leases are written and judged by the database's clock, not the hosts'.

    PostgreSQL: yes, so that a worker host whose clock is off can neither lose
    live runs nor keep dead ones. The clock is statement_timestamp() (what
    Django's Now() gives there): one value for all rows of a statement, and it
    moves on between the statements of a transaction, where now() would stay
    at the transaction's start. SQLite: no; all its processes read one
    machine's clock, and its CURRENT_TIMESTAMP is text to the whole second,
    unlike the datetimes Django stores. Backends not tested here keep the
    hosts' clocks too.
    """
    return connection.vendor == 'postgresql'


def choose():
    """The driver for the current database (see the module doc)."""
    if connection.vendor == 'postgresql':
        return PostgreSQLStorage()
    if connection.vendor == 'sqlite' and sqlite3.sqlite_version_info >= SQLITE_RETURNING:
        return SQLiteStorage()
    return PortableStorage()


_chosen = {}


def backend():
    """The driver for the default database, chosen once per kind of database."""
    vendor = connection.vendor
    if vendor not in _chosen:
        _chosen[vendor] = choose()
    return _chosen[vendor]


class PortableStorage:
    """The ORM, one row at a time (the reference for what each statement of the others does)."""

    #: Whether batches are written in one statement each (see the module doc).
    fast_sql = False

    # -- the tick's side: claim, lose ---------------------------------------------------

    def claim(self, claims, now):
        """Apply `claims`; return (run id, task id) of each pending run created.

        A task is claimed only if it is still at the slot its claim saw and
        may be claimed (Task.objects.claimable()); each task claimed gets a
        pending run for that slot.
        """
        made = []
        for claim in claims:
            ours = Task.objects.claimable().filter(pk=claim.task_id, next_run=claim.slot)
            changes = {'next_run': claim.following, 'running': True,
                       'finished_at': claim.finished_at}
            if claim.decrement:
                changes['iterations'] = F('iterations') - 1
            if ours.update(**changes):
                run = TaskRun.objects.create(task_id=claim.task_id, task_label=claim.label,
                                             scheduled_for=claim.slot, priority=claim.priority,
                                             queue_name=claim.queue_name)
                made.append((run.pk, claim.task_id))
        return made

    def end_unrun(self, task, when):
        """Mark a task whose end passed before its next slot finished; True if this did."""
        return bool(Task.objects.filter(pk=task.pk, next_run=task.next_run,
                                        finished_at=None).update(next_run=None, finished_at=when))

    def expired(self, now):
        """The running runs whose lease has ended, with their tasks."""
        return (TaskRun.objects.filter(status=TaskRun.RUNNING, lease_until__lt=_clock(now))
                .select_related('task'))

    def lose(self, run_id, now, error):
        """Record an expired run lost, if it still is running and expired; True if this did.

        Its finished_at is `now`, when it was found lost: a job whose last
        attempt was lost has finished then (TaskResult.finished_at).
        """
        return bool(TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING,
                                           lease_until__lt=_clock(now)).update(
            status=TaskRun.LOST, lease_until=None, error=error, finished_at=now))

    # -- the worker's side: take, renew, give back, finish ------------------------------

    def take(self, now, lease, host, pid, limit=1, run_id=None, queue=None, or_next=False):
        """Switch up to `limit` due pending runs to running, first in line first; return them.

        First in line: the highest priority, then the oldest; only `queue`'s
        runs if given. Each returned run has its task loaded (None if the task
        was deleted, or for a hand-off job). `now` is this host's time, for
        started_at and not_before; each lease lasts `lease` (a timedelta) by the
        clock database_clock() names. With `run_id`, takes that run only,
        whatever its not_before: whoever rang for it found it due; with
        `or_next` too, the first in line of `queue` (that run included), so
        priorities hold among runs rung for together.
        """
        if run_id is not None and or_next:
            return (self.take(now, lease, host, pid, 1, None, queue)
                    or self.take(now, lease, host, pid, 1, run_id))
        until = _lease_end_value(now, lease)
        waiting = TaskRun.objects.filter(status=TaskRun.PENDING)
        if run_id is not None:
            waiting = waiting.filter(pk=run_id)
        else:
            waiting = waiting.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            if queue is not None:
                waiting = waiting.filter(queue_name=queue)
        taken = []
        for candidate in waiting.order_by('-priority', 'pk').values_list(
                'pk', flat=True)[:limit + 5]:
            if len(taken) < limit and TaskRun.objects.filter(
                    pk=candidate, status=TaskRun.PENDING).update(
                    status=TaskRun.RUNNING, started_at=now, lease_until=until, host=host,
                    pid=pid):
                taken.append(candidate)
        runs = TaskRun.objects.select_related('task').filter(pk__in=taken)
        return list(runs.order_by('-priority', 'pk'))

    def renew(self, run_ids, lease, now):
        """Extend the leases of those runs still running and not asked to stop; return their ids."""
        until = _lease_end_value(now, lease)
        return {run_id for run_id in run_ids
                if TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING,
                                          stop_requested=False).update(lease_until=until)}

    def give_back(self, run_ids, host, pid):
        """Hand runs this process took but never started back to the queue; return their ids."""
        given = set()
        for run_id in run_ids:
            if TaskRun.objects.filter(pk=run_id, status=TaskRun.RUNNING, host=host,
                                      pid=pid).update(
                    status=TaskRun.PENDING, started_at=None, lease_until=None, host='',
                    pid=None):
                given.add(run_id)
        return given

    def finish(self, finishes):
        """Record how runs ended (Finish records); return the ids that were still running.

        A run no longer running (lost, or recorded by another process) is left untouched.
        """
        return {finish.run_id for finish in finishes
                if TaskRun.objects.filter(pk=finish.run_id, status=TaskRun.RUNNING).update(
                    status=finish.status, error=finish.error, started_at=finish.started_at,
                    finished_at=finish.finished_at, duration=finish.duration,
                    return_value=finish.return_value, lease_until=None)}

    # -- what follows a run: another attempt, the task's state, its deletion -----------------

    def add_job(self, run):
        """Write `run`, a new hand-off job's pending run (unsaved); it gets its id."""
        run.save(force_insert=True)

    def add_attempt(self, run, not_before):
        """A pending run for the next attempt at `run`'s slot (or job), or None if its task is gone."""
        if not run.is_job and not Task.objects.filter(pk=run.task_id).exists():
            return None
        return TaskRun.objects.create(
            task_id=run.task_id, task_label=run.task_label, scheduled_for=run.scheduled_for,
            attempt=run.attempt + 1, not_before=not_before, priority=run.priority,
            queue_name=run.queue_name, function=run.function, arguments=run.arguments,
            options=run.options, first_attempt=run.job_id if run.is_job else None)

    def settle(self, settlements):
        """Write each task's last outcome and userdata; clear `running` if no run is active."""
        for settlement in settlements:
            changes = {'running': Exists(TaskRun.objects.filter(
                task_id=settlement.task_id, status__in=TaskRun.ACTIVE))}
            if settlement.outcome is not None:
                changes.update(last_outcome=settlement.outcome, last_run=settlement.last_run)
            if settlement.userdata is not None:
                changes['_extra_data'] = settlement.userdata
            Task.objects.filter(pk=settlement.task_id).update(**changes)

    def delete_finished(self, task_ids):
        """Delete those tasks with no slot left and no active run; return their ids.

        Their runs keep their history, unlinked from the task.
        """
        gone = set()
        for task_id in task_ids:
            idle = Task.objects.filter(pk=task_id, finished_at__isnull=False).exclude(
                pk__in=TaskRun.objects.filter(task_id=task_id, status__in=TaskRun.ACTIVE)
                .values('task_id'))
            if idle.exists():
                TaskRun.objects.filter(task_id=task_id).update(task=None)
                if idle.delete()[0]:
                    gone.add(task_id)
        return gone


class SQLiteStorage(PortableStorage):
    """SQLite 3.35 and later: a batch per statement, with UPDATE ... RETURNING."""

    fast_sql = True
    # PostgreSQL's casts for the columns of a VALUES list; SQLite needs none.
    TIME, NUMBER = '', ''

    def _values(self, columns, rows):
        """The FROM source of a batch update, and its WITH prefix (SQLite names it first)."""
        return 'v', 'WITH %s AS (VALUES %s) ' % (columns, rows)

    def claim(self, claims, now):
        """One statement marks the tasks claimed, one more inserts their pending runs."""
        if not claims:
            return []
        cursor_sql, values, conditions = self._claim_update(claims)
        source, prefix = self._values('v(id, slot, following, finished, decrement)',
                                      ', '.join(['(%s, %s, %s, %s, %s)'] * len(claims)))
        insert_columns, defaults = _new_run_columns(now)
        with connection.cursor() as cursor:
            cursor.execute(prefix + cursor_sql.format(task=TASK, c='', source=source),
                           values + [True] + conditions)
            won = {row[0] for row in cursor.fetchall()}
            new_runs = [(claim.task_id, claim.label, _datetime(claim.slot), claim.priority,
                         claim.queue_name) for claim in claims if claim.task_id in won]
            if not new_runs:
                return []
            marks = '(%s)' % ', '.join(['%s'] * (5 + len(defaults)))
            params = []
            for new_run in new_runs:
                params += list(new_run) + defaults
            cursor.execute(
                'INSERT INTO {run} (task_id, task_label, scheduled_for, priority, queue_name, '
                '{cols}) VALUES '
                '{rows} RETURNING id, task_id'.format(run=RUN, cols=', '.join(insert_columns),
                                                      rows=', '.join([marks] * len(new_runs))),
                params)
            return sorted(tuple(row) for row in cursor.fetchall())

    def _claim_update(self, claims):
        """The claim's conditional UPDATE: Task.objects.claimable() at the slot each claim saw."""
        values = []
        for claim in claims:
            values += [claim.task_id, _datetime(claim.slot), _datetime(claim.following),
                       _datetime(claim.finished_at), 1 if claim.decrement else 0]
        update = ('UPDATE {task} SET next_run = v.following{c}, running = %s, '
                  'finished_at = v.finished{c}, iterations = {task}.iterations - v.decrement '
                  'FROM {source} WHERE {task}.id = v.id AND {task}.next_run = v.slot{c} '
                  'AND {task}.enabled = %s AND {task}.finished_at IS NULL '
                  'AND ({task}.allow_overlap = %s OR {task}.running = %s) RETURNING {task}.id')
        return update, values, [True, True, False]

    def take(self, now, lease, host, pid, limit=1, run_id=None, queue=None, or_next=False):
        """One statement takes the runs and returns them with their tasks (as JSON arrays)."""
        update, params, pick = self._take_update(now, lease, host, pid, limit, run_id, queue,
                                                 or_next)
        with connection.cursor() as cursor:
            cursor.execute(
                (update + ' RETURNING {cols}, (SELECT json_array({task_cols}) FROM {task} '
                 'WHERE {task}.id = {run}.task_id)').format(
                    run=RUN, task=TASK, pick='IN (%s)' % pick,
                    cols=', '.join(RUN_COLUMNS), task_cols=', '.join(TASK_COLUMNS), **WORDS),
                params)
            rows = cursor.fetchall()
        runs = []
        for row in sorted(rows, key=lambda row: (-row[PRIORITY], row[0])):
            task = json.loads(row[-1]) if row[-1] is not None else []
            runs.append(_from_row(tuple(row[:-1]) + tuple(task)))
        return runs

    def _pick(self, now, limit, run_id, queue, or_next):
        """The SELECT of the runs a take switches, and its parameters (see take)."""
        due, params = '(not_before IS NULL OR not_before <= %s)', [_datetime(now)]
        if queue is not None:
            due, params = due + ' AND queue_name = %s', params + [queue]
        order = 'priority DESC, id'
        if run_id is None:
            which = due
        elif or_next:  # the first in line, the named run (due by whoever rang) included
            which, params, limit = '(id = %s OR (' + due + '))', [run_id] + params, 1
        else:
            which, params, limit = 'id = %s', [run_id], 1
        return ("SELECT id FROM {run} WHERE status = '{pending}' AND {which} ORDER BY {order} "
                "LIMIT {limit}").format(run=RUN, which=which, order=order, limit=int(limit),
                                        **WORDS), params

    def _take_update(self, now, lease, host, pid, limit, run_id, queue, or_next=False):
        """The take's UPDATE (its SELECT goes at `{pick}`), its parameters, and that SELECT."""
        lease_until, lease_param = _lease_end_sql(now, lease)
        pick, pick_params = self._pick(now, limit, run_id, queue, or_next)
        update = ("UPDATE {run} SET status = '{running}', started_at = %s, lease_until = "
                  + lease_until + ", host = %s, pid = %s WHERE id {pick} AND status = "
                  "'{pending}'")
        return update, [_datetime(now), lease_param, host, pid] + pick_params, pick

    def renew(self, run_ids, lease, now):
        marks = ', '.join(['%s'] * len(run_ids))
        lease_until, lease_param = _lease_end_sql(now, lease)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE {run} SET lease_until = {until} WHERE id IN ({marks}) AND "
                           "status = '{running}' AND stop_requested = %s RETURNING id"
                           .format(run=RUN, until=lease_until, marks=marks, **WORDS),
                           [lease_param] + list(run_ids) + [False])
            return {row[0] for row in cursor.fetchall()}

    def give_back(self, run_ids, host, pid):
        marks = ', '.join(['%s'] * len(run_ids))
        with connection.cursor() as cursor:
            cursor.execute("UPDATE {run} SET status = '{pending}', started_at = NULL, "
                           "lease_until = NULL, host = '', pid = NULL WHERE id IN ({marks}) "
                           "AND status = '{running}' AND host = %s AND pid = %s RETURNING id"
                           .format(run=RUN, marks=marks, **WORDS), list(run_ids) + [host, pid])
            return {row[0] for row in cursor.fetchall()}

    def finish(self, finishes):
        """One statement records the batch."""
        values = []
        for finish in finishes:
            values += [finish.run_id, finish.status, finish.error,
                       _datetime(finish.started_at), _datetime(finish.finished_at),
                       finish.duration, finish.return_value]
        source, prefix = self._values(
            'v(id, status, error, started, finished, duration, returned)',
            ', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(finishes)))
        update = ("UPDATE {run} SET status = v.status, error = v.error, started_at = "
                  "v.started{c}, finished_at = v.finished{c}, duration = v.duration{n}, "
                  "return_value = v.returned, lease_until = NULL FROM {source} WHERE "
                  "{run}.id = v.id AND {run}.status = '{running}' RETURNING {run}.id")
        with connection.cursor() as cursor:
            cursor.execute(prefix + update.format(run=RUN, c=self.TIME, n=self.NUMBER,
                                                  source=source, **WORDS), values)
            return {row[0] for row in cursor.fetchall()}

    def settle(self, settlements):
        """One statement settles the batch's tasks."""
        values = []
        for settlement in settlements:
            values += [settlement.task_id, settlement.outcome, _datetime(settlement.last_run),
                       settlement.userdata]
        source, prefix = self._values('v(id, outcome, last_run, userdata)',
                                      ', '.join(['(%s, %s, %s, %s)'] * len(settlements)))
        update = ("UPDATE {task} SET last_outcome = COALESCE(v.outcome, {task}.last_outcome), "
                  "last_run = COALESCE(v.last_run{c}, {task}.last_run), "
                  "_extra_data = COALESCE(v.userdata, {task}._extra_data), "
                  "running = EXISTS (SELECT 1 FROM {run} WHERE {run}.task_id = {task}.id "
                  "AND {run}.status IN ('{pending}', '{running}')) "
                  "FROM {source} WHERE {task}.id = v.id")
        with connection.cursor() as cursor:
            cursor.execute(prefix + update.format(task=TASK, run=RUN, c=self.TIME,
                                                  source=source, **WORDS), values)

    def delete_finished(self, task_ids):
        """Two statements: delete the finished tasks, then unlink the runs of those deleted.

        The runs unlinked are those of the tasks deleted (the foreign key is
        checked at commit), so a run ending between the two writes cannot
        leave a run pointing at a deleted task.
        """
        with connection.cursor() as cursor:
            cursor.execute(_delete_finished_sql(task_ids), list(task_ids))
            gone = [row[0] for row in cursor.fetchall()]
            if gone:
                cursor.execute(_UNLINK.format(run=RUN, gone=', '.join(['%s'] * len(gone))),
                               gone)
            return set(gone)


    def add_job(self, run):
        """One INSERT ... RETURNING, without the ORM's save machinery (a third of its cost)."""
        run.created_at = run.created_at or timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_RUN, [field.get_db_prep_save(getattr(run, field.attname),
                                                                connection)
                                         for field in _INSERTED])
            run.pk = cursor.fetchone()[0]
        run._state.adding = False


class PostgreSQLStorage(SQLiteStorage):
    """PostgreSQL: SQLite's statements with casts; SKIP LOCKED takes; CTEs for two-step writes."""

    TIME, NUMBER = '::timestamptz', '::double precision'

    def _values(self, columns, rows):
        return '(VALUES %s) AS %s' % (rows, columns), ''

    def claim(self, claims, now):
        """One statement: the claims' UPDATE feeds the INSERT of their pending runs."""
        if not claims:
            return []
        update, values, conditions = self._claim_update(claims)
        source, _ = self._values('v(id, slot, following, finished, decrement)',
                                 ', '.join(['(%s, %s, %s, %s, %s)'] * len(claims)))
        insert_columns, defaults = _new_run_columns(now)
        claimed = update.format(task=TASK, c=self.TIME, source=source)
        with connection.cursor() as cursor:
            cursor.execute(
                'WITH claimed AS (' + claimed + ', {task}.label, v.slot::timestamptz AS slot, '
                '{task}.priority, {task}.queue_name) '
                'INSERT INTO {run} (task_id, task_label, scheduled_for, priority, queue_name, '
                '{cols}) SELECT id, label, slot, priority, queue_name, {marks} FROM claimed '
                'ORDER BY slot, id '
                'RETURNING id, task_id'.format(task=TASK, run=RUN, cols=', '.join(insert_columns),
                                               marks=', '.join(['%s'] * len(defaults))),
                [True] + values + conditions + defaults)
            return [tuple(row) for row in cursor.fetchall()]

    def take(self, now, lease, host, pid, limit=1, run_id=None, queue=None, or_next=False):
        """One statement takes the runs, skipping rows other workers hold, joined to their tasks."""
        update, params, pick = self._take_update(now, lease, host, pid, limit, run_id, queue,
                                                 or_next)
        with connection.cursor() as cursor:
            # ARRAY(...) makes PostgreSQL pick once; with IN (...) it may pick again per
            # row, and SKIP LOCKED then lets it take far more than `limit` runs.
            cursor.execute(
                ('WITH taken AS (' + update + ' RETURNING *) SELECT {cols} FROM taken '
                 'LEFT JOIN {task} ON {task}.id = taken.task_id ORDER BY taken.priority DESC, '
                 'taken.id').format(
                    run=RUN, task=TASK,
                    pick='= ANY(ARRAY(%s FOR UPDATE SKIP LOCKED))' % pick,
                    cols=', '.join(['taken.%s' % c for c in RUN_COLUMNS]
                                   + ['%s.%s' % (TASK, c) for c in TASK_COLUMNS]), **WORDS),
                params)
            return [_from_row(row) for row in cursor.fetchall()]

    def delete_finished(self, task_ids):
        """One statement: the DELETE and the unlinking of its tasks' runs in one CTE."""
        with connection.cursor() as cursor:
            cursor.execute('WITH gone AS ({delete}), unlinked AS ({unlink}) SELECT id FROM gone'
                           .format(delete=_delete_finished_sql(task_ids),
                                   unlink=_UNLINK.format(run=RUN, gone='SELECT id FROM gone')),
                           list(task_ids))
            return {row[0] for row in cursor.fetchall()}


_UNLINK = 'UPDATE {run} SET task_id = NULL WHERE task_id IN ({gone})'
_INSERTED = [field for field in TaskRun._meta.concrete_fields if not field.primary_key]
_INSERT_RUN = 'INSERT INTO {run} ({cols}) VALUES ({marks}) RETURNING id'.format(
    run=RUN, cols=', '.join(field.column for field in _INSERTED),
    marks=', '.join(['%s'] * len(_INSERTED)))


def _delete_finished_sql(task_ids):
    return ("DELETE FROM {task} WHERE id IN ({marks}) AND finished_at IS NOT NULL AND NOT "
            "EXISTS (SELECT 1 FROM {run} WHERE {run}.task_id = {task}.id AND {run}.status "
            "IN ('{pending}', '{running}')) RETURNING id").format(
        run=RUN, task=TASK, marks=', '.join(['%s'] * len(task_ids)), **WORDS)


# -- time and rows -----------------------------------------------------------------------


def _clock(now):
    """The time leases are judged by: the database's where database_clock(), else `now`.

    Elsewhere the processes share one machine's clock (SQLite), so `now`, this
    process's time, does.
    """
    return Now() if database_clock() else now


def _lease_end_value(now, lease):
    """For the ORM: when a lease of `lease` (a timedelta) taken now ends, by _clock's clock."""
    if database_clock():
        return ExpressionWrapper(Now() + lease, output_field=DateTimeField())
    return now + lease


def _lease_end_sql(now, lease):
    """For SQL: when a lease of `lease` taken now ends, and its parameter."""
    if database_clock():
        return 'statement_timestamp() + %s', lease
    return '%s', _datetime(now + lease)


def _datetime(value):
    return connection.ops.adapt_datetimefield_value(value)


def _from_row(row):
    """A TaskRun with its task (or None) from the columns of both, run's first."""
    run = TaskRun.from_db(connection.alias, RUN_NAMES, _converted(TaskRun, row[:len(RUN_NAMES)]))
    task_values = row[len(RUN_NAMES):]
    task = None
    if task_values and task_values[0] is not None:
        task = Task.from_db(connection.alias, TASK_NAMES, _converted(Task, task_values))
    if task is not None:
        run.task = task  # caches it; task_id is already its id
    return run


def _converted(model, values):
    """Values as the ORM would give them (SQLite returns datetimes as text)."""
    out = []
    for field, value in zip(model._meta.concrete_fields, values):
        column = field.get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(column):
            # Django 1.11's converters also take a context argument.
            extra = ({},) if django.VERSION < (2, 0) else ()
            value = converter(value, column, connection, *extra)
        out.append(value)
    return out


def _new_run_columns(now):
    """The other columns of a new pending run and their values (the model's defaults)."""
    columns, values = [], []
    for field in TaskRun._meta.concrete_fields:
        if field.primary_key or field.attname in ('task_id', 'task_label', 'scheduled_for',
                                                  'priority', 'queue_name'):
            continue
        value = now if field.attname == 'created_at' else field.get_default()
        columns.append(field.column)
        values.append(field.get_db_prep_save(value, connection))
    return columns, values
