"""The hot statements of the run lifecycle, written as SQL so each is one round trip.

Taking a run reads it with its task in the same statement: on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so workers never wait on each other's rows; on
SQLite (where writers take turns anyway) with `UPDATE ... RETURNING` and the
task as a JSON array.
Claiming a batch of due tasks is one conditional `UPDATE ... FROM (VALUES ...)`
on both. Other backends, and SQLite before 3.35, take the portable ORM path,
one row at a time.
"""

import json
import sqlite3

import django
from django.db import connection

from sisy.models import Task, TaskRun

RUN = TaskRun._meta.db_table
TASK = Task._meta.db_table
RUN_COLUMNS = [field.column for field in TaskRun._meta.concrete_fields]
TASK_COLUMNS = [field.column for field in Task._meta.concrete_fields]
RUN_NAMES = [field.attname for field in TaskRun._meta.concrete_fields]
TASK_NAMES = [field.attname for field in Task._meta.concrete_fields]
# The first SQLite with UPDATE ... RETURNING (2021); older ones take the ORM path.
SQLITE_RETURNING = (3, 35, 0)


def fast_sql():
    """Whether the database takes these statements; if not, the lifecycle uses the ORM."""
    if connection.vendor == 'sqlite':
        return sqlite3.sqlite_version_info >= SQLITE_RETURNING
    return connection.vendor == 'postgresql'


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


def _lease_end(now, lease):
    """SQL for when a lease of `lease` (a timedelta) taken now ends, and its parameter."""
    if database_clock():
        return 'statement_timestamp() + %s', lease
    return '%s', _datetime(now + lease)


def take_runs(now, lease, host, pid, limit=1, run_id=None):
    """Switch up to `limit` due pending runs, oldest first, to running; return them.

    `now` is this host's time, for started_at and not_before; each lease lasts
    `lease` (a timedelta) from now by the clock database_clock() names.
    With `run_id`, takes that run only, whatever its not_before: the tick that
    rang for it found it due by its own clock.
    """
    if run_id is not None:
        which, params, limit = 'id = %s', [run_id], 1
    else:
        which, params = '(not_before IS NULL OR not_before <= %s)', [_datetime(now)]
    lease_until, lease_param = _lease_end(now, lease)
    changes = [_datetime(now), lease_param, host, pid]
    pick = ("SELECT id FROM {run} WHERE status = 'pending' AND {which} ORDER BY id LIMIT {limit}"
            .format(run=RUN, which=which, limit=int(limit)))
    update = ("UPDATE {run} SET status = 'running', started_at = %s, lease_until = "
              + lease_until + ", host = %s, pid = %s WHERE id {pick} AND status = 'pending'")
    with connection.cursor() as cursor:
        if connection.vendor == 'postgresql':
            # ARRAY(...) makes PostgreSQL pick once; with IN (...) it may pick again per
            # row, and SKIP LOCKED then lets it take far more than `limit` runs.
            cursor.execute(
                ('WITH taken AS (' + update + ' RETURNING *) SELECT {cols} FROM taken '
                 'LEFT JOIN {task} ON {task}.id = taken.task_id ORDER BY taken.id').format(
                    run=RUN, task=TASK, pick='= ANY(ARRAY(%s FOR UPDATE SKIP LOCKED))' % pick,
                    cols=', '.join(['taken.%s' % c for c in RUN_COLUMNS]
                                   + ['%s.%s' % (TASK, c) for c in TASK_COLUMNS])),
                changes + params)
            return [_from_row(row) for row in cursor.fetchall()]
        # SQLite: the task comes back as one JSON array from a subquery in RETURNING.
        cursor.execute((update + ' RETURNING {cols}, (SELECT json_array({task_cols}) FROM {task} '
                        'WHERE {task}.id = {run}.task_id)').format(
                           run=RUN, task=TASK, pick='IN (%s)' % pick,
                           cols=', '.join(RUN_COLUMNS), task_cols=', '.join(TASK_COLUMNS)),
                       changes + params)
        rows = cursor.fetchall()
    runs = []
    for row in sorted(rows, key=lambda row: row[0]):
        task = json.loads(row[-1]) if row[-1] is not None else []
        runs.append(_from_row(tuple(row[:-1]) + tuple(task)))
    return runs


def finish_runs(endings):
    """Record the endings of running runs in one statement; return the ids that were running.

    `endings` are (run_id, status, error, started_at, finished_at, duration)
    tuples. A run no longer running (lost, or recorded by another process) is
    left untouched.
    """
    rows = ', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(endings))
    values = []
    for run_id, status, error, started_at, finished_at, duration in endings:
        values += [run_id, status, error, _datetime(started_at), _datetime(finished_at), duration]
    postgresql = connection.vendor == 'postgresql'
    update = ("UPDATE {run} SET status = v.status, error = v.error, started_at = v.started{c}, "
              "finished_at = v.finished{c}, duration = v.duration{n}, lease_until = NULL "
              "FROM {source} WHERE {run}.id = v.id AND {run}.status = 'running' "
              "RETURNING {run}.id")
    columns = 'v(id, status, error, started, finished, duration)'
    with connection.cursor() as cursor:
        if postgresql:
            cursor.execute(update.format(run=RUN, c='::timestamptz', n='::double precision',
                                         source='(VALUES %s) AS %s' % (rows, columns)), values)
        else:
            cursor.execute('WITH %s AS (VALUES %s) ' % (columns, rows)
                           + update.format(run=RUN, c='', n='', source='v'), values)
        return {row[0] for row in cursor.fetchall()}


def release_tasks(releases):
    """Write each task's last outcome and userdata and clear `running` if no run is active.

    `releases` are (task_id, outcome, last_run, userdata) tuples, one per task;
    None leaves that column as it is (a skipped run has no outcome).
    """
    rows = ', '.join(['(%s, %s, %s, %s)'] * len(releases))
    values = []
    for task_id, outcome, last_run, userdata in releases:
        values += [task_id, outcome, _datetime(last_run), userdata]
    cast = '::timestamptz' if connection.vendor == 'postgresql' else ''
    update = ("UPDATE {task} SET last_outcome = COALESCE(v.outcome, {task}.last_outcome), "
              "last_run = COALESCE(v.last_run{c}, {task}.last_run), "
              "_extra_data = COALESCE(v.userdata, {task}._extra_data), "
              "running = EXISTS (SELECT 1 FROM {run} WHERE {run}.task_id = {task}.id "
              "AND {run}.status IN ('pending', 'running')) "
              "FROM {source} WHERE {task}.id = v.id")
    columns = 'v(id, outcome, last_run, userdata)'
    with connection.cursor() as cursor:
        if connection.vendor == 'postgresql':
            cursor.execute(update.format(task=TASK, run=RUN, c=cast,
                                         source='(VALUES %s) AS %s' % (rows, columns)), values)
        else:
            cursor.execute('WITH %s AS (VALUES %s) ' % (columns, rows)
                           + update.format(task=TASK, run=RUN, c='', source='v'), values)


def renew_leases(run_ids, lease, now):
    """Extend the leases of those runs still running and not asked to stop; return their ids.

    Each lasts `lease` from now by the clock database_clock() names (`now` is this host's time).
    """
    marks = ', '.join(['%s'] * len(run_ids))
    lease_until, lease_param = _lease_end(now, lease)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE {run} SET lease_until = {until} WHERE id IN ({marks}) AND "
                       "status = 'running' AND stop_requested = %s RETURNING id"
                       .format(run=RUN, until=lease_until, marks=marks),
                       [lease_param] + list(run_ids) + [False])
        return {row[0] for row in cursor.fetchall()}


def release_runs(run_ids, host, pid):
    """Hand runs this process took but never started back to the queue; return their ids."""
    marks = ', '.join(['%s'] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE {run} SET status = 'pending', started_at = NULL, "
                       "lease_until = NULL, host = '', pid = NULL WHERE id IN ({marks}) "
                       "AND status = 'running' AND host = %s AND pid = %s RETURNING id"
                       .format(run=RUN, marks=marks), list(run_ids) + [host, pid])
        return {row[0] for row in cursor.fetchall()}


def claim_batch(claims, now):
    """Apply many claims at once; return (run id, task id) of each pending run created.

    `claims` are (task_id, label, slot, following, finished_at, decrement)
    tuples: the slot the claimer saw, the next run after it (None: no more),
    when the task finished (None: not yet) and whether to count an iteration
    down. A task is claimed only if it is still at that slot, enabled, not
    finished, and free to start (overlap allowed or no run active); each task
    claimed gets a pending run. One statement on PostgreSQL, two on SQLite.
    """
    if not claims:
        return []
    rows = ', '.join(['(%s, %s, %s, %s, %s)'] * len(claims))
    values = []
    for task_id, _, slot, following, finished_at, decrement in claims:
        values += [task_id, _datetime(slot), _datetime(following), _datetime(finished_at),
                   1 if decrement else 0]
    columns = 'v(id, slot, following, finished, decrement)'
    update = ('UPDATE {task} SET next_run = v.following{c}, running = %s, '
              'finished_at = v.finished{c}, iterations = {task}.iterations - v.decrement '
              'FROM {source} WHERE {task}.id = v.id AND {task}.next_run = v.slot{c} '
              'AND {task}.enabled = %s AND {task}.finished_at IS NULL '
              'AND ({task}.allow_overlap = %s OR {task}.running = %s) RETURNING {task}.id')
    conditions = [True, True, False]
    insert_columns, defaults = _new_run_columns(now)
    with connection.cursor() as cursor:
        if connection.vendor == 'postgresql':
            claimed = update.format(task=TASK, c='::timestamptz',
                                    source='(VALUES %s) AS %s' % (rows, columns))
            cursor.execute(
                'WITH claimed AS (' + claimed + ', {task}.label, v.slot::timestamptz AS slot) '
                'INSERT INTO {run} (task_id, task_label, scheduled_for, {cols}) '
                'SELECT id, label, slot, {marks} FROM claimed ORDER BY slot, id '
                'RETURNING id, task_id'.format(task=TASK, run=RUN, cols=', '.join(insert_columns),
                                      marks=', '.join(['%s'] * len(defaults))),
                [True] + values + conditions + defaults)
            return [tuple(row) for row in cursor.fetchall()]
        cursor.execute('WITH %s AS (VALUES %s) ' % (columns, rows)
                       + update.format(task=TASK, c='', source='v'),
                       values + [True] + conditions)
        won = {row[0] for row in cursor.fetchall()}
        new_runs = [(task_id, label, _datetime(slot))
                    for task_id, label, slot, _, _, _ in claims if task_id in won]
        if not new_runs:
            return []
        marks = '(%s)' % ', '.join(['%s'] * (3 + len(defaults)))
        params = []
        for new_run in new_runs:
            params += list(new_run) + defaults
        cursor.execute('INSERT INTO {run} (task_id, task_label, scheduled_for, {cols}) VALUES '
                       '{rows} RETURNING id, task_id'.format(run=RUN, cols=', '.join(insert_columns),
                                                    rows=', '.join([marks] * len(new_runs))),
                       params)
        return sorted(tuple(row) for row in cursor.fetchall())


def _new_run_columns(now):
    """The other columns of a new pending run and their values (the model's defaults)."""
    columns, values = [], []
    for field in TaskRun._meta.concrete_fields:
        if field.primary_key or field.attname in ('task_id', 'task_label', 'scheduled_for'):
            continue
        value = now if field.attname == 'created_at' else field.get_default()
        columns.append(field.column)
        values.append(field.get_db_prep_save(value, connection))
    return columns, values


def delete_finished(task_ids):
    """Delete those of the tasks that have finished and have no active run; return their ids.

    Their runs keep their history, unlinked from them. The runs unlinked are
    those of the tasks deleted (the foreign key is checked at commit), so a run
    ending between the two writes cannot leave a run pointing at a deleted task.
    One statement on PostgreSQL, two on SQLite.
    """
    marks = ', '.join(['%s'] * len(task_ids))
    delete = ("DELETE FROM {task} WHERE id IN ({marks}) AND finished_at IS NOT NULL AND NOT "
              "EXISTS (SELECT 1 FROM {run} WHERE {run}.task_id = {task}.id AND {run}.status "
              "IN ('pending', 'running')) RETURNING id").format(run=RUN, task=TASK, marks=marks)
    unlink = 'UPDATE {run} SET task_id = NULL WHERE task_id IN ({gone})'
    with connection.cursor() as cursor:
        if connection.vendor == 'postgresql':
            cursor.execute('WITH gone AS ({delete}), unlinked AS ({unlink}) SELECT id FROM gone'
                           .format(delete=delete, unlink=unlink.format(
                               run=RUN, gone='SELECT id FROM gone')), list(task_ids))
            return {row[0] for row in cursor.fetchall()}
        cursor.execute(delete, list(task_ids))
        gone = [row[0] for row in cursor.fetchall()]
        if gone:
            cursor.execute(unlink.format(run=RUN, gone=', '.join(['%s'] * len(gone))), gone)
        return set(gone)
