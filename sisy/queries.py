"""The hot statements of the run lifecycle, written as SQL so each is one round trip.

Taking a run reads it with its task in the same statement: on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so workers never wait on each other's rows; on
SQLite (where writers take turns anyway) with `UPDATE ... RETURNING` and the
task as a JSON array.
Claiming a batch of due tasks is one conditional `UPDATE ... FROM (VALUES ...)`
on both. Other backends take the portable ORM path, one row at a time.
"""

import json

import django
from django.db import connection

from sisy.models import Task, TaskRun

RUN = TaskRun._meta.db_table
TASK = Task._meta.db_table
RUN_COLUMNS = [field.column for field in TaskRun._meta.concrete_fields]
TASK_COLUMNS = [field.column for field in Task._meta.concrete_fields]
RUN_NAMES = [field.attname for field in TaskRun._meta.concrete_fields]
TASK_NAMES = [field.attname for field in Task._meta.concrete_fields]


def fast_sql():
    return connection.vendor in ('postgresql', 'sqlite')


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


def take_run(now, lease_until, host, pid, run_id=None):
    """Switch run `run_id`, or else the oldest due pending run, to running; return it or None.

    A named run is taken whatever its not_before: the tick that rang for it
    found it due by its own clock.
    """
    if run_id is not None:
        which, params = 'id = %s', [run_id]
    else:
        which, params = '(not_before IS NULL OR not_before <= %s)', [_datetime(now)]
    changes = [_datetime(now), _datetime(lease_until), host, pid]
    pick = ("SELECT id FROM {run} WHERE status = 'pending' AND {which} ORDER BY id LIMIT 1"
            .format(run=RUN, which=which))
    update = ("UPDATE {run} SET status = 'running', started_at = %s, lease_until = %s, "
              "host = %s, pid = %s WHERE id = ({pick}) AND status = 'pending'")
    with connection.cursor() as cursor:
        if connection.vendor == 'postgresql':
            cursor.execute(
                ('WITH taken AS (' + update + ' RETURNING *) SELECT {cols} FROM taken '
                 'LEFT JOIN {task} ON {task}.id = taken.task_id').format(
                    run=RUN, task=TASK, pick=pick + ' FOR UPDATE SKIP LOCKED',
                    cols=', '.join(['taken.%s' % c for c in RUN_COLUMNS]
                                   + ['%s.%s' % (TASK, c) for c in TASK_COLUMNS])),
                changes + params)
            row = cursor.fetchone()
            return _from_row(row) if row else None
        # SQLite: the task comes back as one JSON array from a subquery in RETURNING.
        cursor.execute((update + ' RETURNING {cols}, (SELECT json_array({task_cols}) FROM {task} '
                        'WHERE {task}.id = {run}.task_id)').format(
                           run=RUN, task=TASK, pick=pick,
                           cols=', '.join(RUN_COLUMNS), task_cols=', '.join(TASK_COLUMNS)),
                       changes + params)
        row = cursor.fetchone()
    if row is None:
        return None
    task = json.loads(row[-1]) if row[-1] is not None else []
    return _from_row(tuple(row[:-1]) + tuple(task))


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


def delete_if_finished(task_id):
    """Delete a finished task with no active run (its runs keep their history); True if gone."""
    idle = ("NOT EXISTS (SELECT 1 FROM {run} WHERE task_id = %s AND status IN "
            "('pending', 'running'))").format(run=RUN)
    with connection.cursor() as cursor:
        cursor.execute('UPDATE {run} SET task_id = NULL WHERE task_id = %s AND '.format(run=RUN)
                       + idle + ' AND EXISTS (SELECT 1 FROM {task} WHERE id = %s AND '
                       'finished_at IS NOT NULL)'.format(task=TASK),
                       [task_id, task_id, task_id])
        cursor.execute('DELETE FROM {task} WHERE id = %s AND finished_at IS NOT NULL AND '
                       .format(task=TASK) + idle, [task_id, task_id])
        return cursor.rowcount > 0
