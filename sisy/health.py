"""Is the scheduler healthy? Each check reads a few rows and says what is wrong, in words.

The checks take `now` (an aware datetime) and return a list of problems, one
line each, empty when all is well. ``manage.py sisy_health`` runs them for
monitors, the admin's task list shows the cheap two (ticks and the queue) in a
banner, and :mod:`sisy.metrics` reads the same numbers for Prometheus.
"""

import contextlib
import datetime as dt
import json

from django.db import connection, transaction
from django.db.models import (Case, F, Func, IntegerField, Max, Min, OuterRef, Q, Subquery,
                              Sum, Value, When)
from django.db.models.functions import Coalesce

from sisy.conf import setting
from sisy.doorbells import channel_for
from sisy.models import Task, TaskRun, TickRecord
from sisy.runner import GRACE_SECONDS
from sisy.validation import DEFAULT_QUEUE

CHECKS = ('tick', 'waiting', 'timeout', 'failures', 'disabled')
TICK_PERIODS = 3  # no tick for this many heartbeat periods is a problem
FAILURES = 3      # failing this many times in a row is a problem
LISTED = 10       # problems of one kind listed one by one; the rest are counted

UNREAD = object()  # a figure the caller has not read yet


def seconds(value):
    """A setting's seconds for people: '300 s', '7.5 s'."""
    return '%g s' % value


def measured(value):
    """Measured seconds for people, whole: '47 s'."""
    return '%d s' % round(max(0.0, value))


def _count(number, thing):
    return '%d %s%s' % (number, thing, '' if number == 1 else 's')


def _of_them(jobs):
    """'1 of them a hand-off job', '3 of them hand-off jobs'."""
    return '%d of them %s' % (jobs, 'a hand-off job' if jobs == 1 else 'hand-off jobs')


def default_max_wait():
    """How long a run may wait for a worker: two heartbeat periods, at least 60 seconds.

    A run that becomes due between ticks can wait up to a period for the next
    tick's run messages when every worker was busy, so less would be noise.
    """
    return max(60.0, 2 * float(setting('SISY_HEARTBEAT_FREQUENCY')))


# -- the numbers ------------------------------------------------------------------------


def last_tick():
    """When a worker last handled a tick (its own clock), or None if none ever did."""
    return TickRecord.objects.aggregate(last=Max('processed_at'))['last']


def queue(now, max_wait=None):
    """The pending runs, in one query, as a dict of totals with a dict per queue.

    ``due``: runs a worker may take now; ``delayed``: further attempts waiting for
    their retry delay; ``later``: hand-off jobs waiting for their run_after time;
    ``oldest``: since when the longest-waiting due run has been waiting (its
    claim or enqueueing, or the end of its delay), or None; ``late``: due runs
    waiting longer than `max_wait` seconds (None when `max_wait` is None).
    ``jobs``, ``jobs_delayed``, ``oldest_job`` and ``late_jobs`` are the same for
    hand-off jobs alone. ``queues`` maps each queue with pending runs to these
    figures for its runs alone.
    """
    due = Q(not_before__isnull=True) | Q(not_before__lte=now)
    job = ~Q(function='')
    since = Coalesce('not_before', 'created_at')
    figures = {
        'due': count_where(due),
        # Only a hand-off job's first attempt can wait for a time of its own (run_after).
        'delayed': count_where(~due & Q(attempt__gt=1)),
        'later': count_where(~due & Q(attempt=1)),
        'oldest': Min(Case(When(due, then=since))),
        'jobs': count_where(due & job),
        'jobs_delayed': count_where(~due & job & Q(attempt__gt=1)),
        'oldest_job': Min(Case(When(due & job, then=since))),
    }
    if max_wait is not None:
        cutoff = now - dt.timedelta(seconds=max_wait)
        late = Q(not_before__isnull=True, created_at__lt=cutoff) | Q(not_before__lt=cutoff)
        figures['late'] = count_where(late)
        figures['late_jobs'] = count_where(late & job)
    rows = (TaskRun.objects.filter(status=TaskRun.PENDING).order_by().values('queue_name')
            .annotate(**figures))
    queues = {}
    for row in rows:
        name = row.pop('queue_name')
        queues[name] = {key: (row.get(key) or 0) if key in figures else None
                        for key in COUNTS}
        queues[name].update(oldest=row['oldest'], oldest_job=row['oldest_job'])
    result = {key: (sum(row[key] for row in queues.values()) if key in figures else None)
              for key in COUNTS}
    for key in ('oldest', 'oldest_job'):
        times = [row[key] for row in queues.values() if row[key] is not None]
        result[key] = min(times) if times else None
    result['queues'] = queues
    return result


COUNTS = ('due', 'delayed', 'later', 'late', 'jobs', 'jobs_delayed', 'late_jobs')
EMPTY_QUEUE = dict(dict.fromkeys(COUNTS, 0), oldest=None, oldest_job=None)  # no run pending


def listed_queues():
    """The queues of SISY_QUEUES (the default alone if the setting is unusable: sisy.E011)."""
    listed = setting('SISY_QUEUES')
    if not isinstance(listed, (list, tuple)):
        return [DEFAULT_QUEUE]
    return [name for name in listed if isinstance(name, str)]


def queue_names(found=()):
    """SISY_QUEUES in their order, then any other of the queues `found`, sorted."""
    listed = listed_queues()
    return listed + sorted(set(found) - set(listed))


def count_where(condition):
    """An aggregate counting the rows that meet `condition` (Django 1.11 has no filter=)."""
    return Sum(Case(When(condition, then=Value(1)), default=Value(0),
                    output_field=IntegerField()))


def unsettled_tasks():
    """Tasks whose last run did not end ok, each with ``failures`` and ``last_success``.

    ``failures`` counts the runs that ended in error, timeout or lost since the
    task's last run that returned or was stopped; ``last_success`` is when its last
    run that returned started (None if none is in the history). One query; the
    run lookups use the (task, status) index, and only for these tasks.
    """
    runs = TaskRun.objects.filter(task=OuterRef('pk')).order_by()
    settled = runs.filter(status__in=TaskRun.SETTLED).order_by('-pk').values('pk')[:1]
    success = runs.filter(status=TaskRun.OK).order_by('-pk').values('started_at')[:1]
    # COUNT as a plain function: an aggregate would make Django group the outer query.
    failed = (runs.filter(status__in=TaskRun.FAILED, pk__gt=OuterRef('settled_pk'))
              .annotate(count=Func(F('pk'), function='COUNT')).values('count'))
    return (Task.objects.exclude(last_outcome__in=('', TaskRun.OK))
            .annotate(settled_pk=Coalesce(Subquery(settled), Value(0)))
            .annotate(failures=Subquery(failed, output_field=IntegerField()),
                      last_success=Subquery(success)))


@contextlib.contextmanager
def simple_plans():
    """Run the queries inside without PostgreSQL's JIT compilation (PostgreSQL 11+).

    The planner prices a subquery per task row high, so on a large task table it
    compiles queries like unsettled_tasks() to machine code, which takes ten times
    longer than running them (300 ms against 30). Off for this transaction only.
    """
    if connection.vendor != 'postgresql' or connection.pg_version < 110000:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute('SET LOCAL jit = off')
        yield


# -- the checks -------------------------------------------------------------------------


def tick_problems(now, periods=TICK_PERIODS, last=UNREAD):
    """No tick handled for `periods` heartbeat periods (`last`: a last_tick() already read)."""
    last = last_tick() if last is UNREAD else last
    frequency = float(setting('SISY_HEARTBEAT_FREQUENCY'))
    limit = periods * frequency
    if last is None:
        return ['no tick processed yet: is sisy_heartbeat running, and a worker on the '
                'channel %s?' % setting('SISY_HEARTBEAT_CHANNEL')]
    age = (now - last).total_seconds()
    if age <= limit:
        return []
    return ['no tick processed for %s (%g heartbeat periods is %s)'
            % (measured(age), periods, seconds(limit))]


def waiting_problems(now, max_wait=None, figures=None):
    """Runs waiting longer than `max_wait` seconds for a worker, one line per queue.

    Each line names its queue, says how many of its late runs are hand-off jobs,
    and for a queue other than the default names the channel its workers serve
    (`figures`: a queue() read with `max_wait`).
    """
    max_wait = default_max_wait() if max_wait is None else max_wait
    figures = queue(now, max_wait) if figures is None else figures
    problems = []
    for name in queue_names(figures['queues']):
        row = figures['queues'].get(name)
        if row and row['late']:
            problems.append(_late_line(name, row, now, max_wait))
    return problems


def _late_line(name, row, now, max_wait):
    late, jobs = row['late'], row['late_jobs']
    oldest = measured((now - row['oldest']).total_seconds())
    line = '%s waiting longer than %s in queue %r (oldest %s)' % (
        _count(late, 'hand-off job' if jobs == late else 'run'), seconds(max_wait), name, oldest)
    if jobs and jobs < late:
        line += ', %s (oldest %s)' % (_of_them(jobs),
                                      measured((now - row['oldest_job']).total_seconds()))
    if name not in listed_queues():
        line += ': no worker takes its runs, as it is not one of SISY_QUEUES'
    elif name != DEFAULT_QUEUE:
        line += ': does a worker serve its channel %s?' % channel_for(name)
    return line


def timeout_problems(now):
    """Runs still running past their timeout (a task's, or a hand-off job's own) and the grace.

    Running runs are few (at most one per worker thread), so they are read and
    compared here rather than in SQL.
    """
    running = (TaskRun.objects.filter(status=TaskRun.RUNNING)
               .filter(Q(task__timeout__isnull=False) | ~Q(function=''))
               .order_by('pk').values_list('pk', 'task_label', 'started_at', 'task__timeout',
                                           'function', 'options'))
    problems = []
    for run_id, label, started, timeout, function, options in running:
        if function:
            timeout = json.loads(options or '{}').get('timeout')
            if timeout is None:
                continue
        took = (now - started).total_seconds() if started else 0
        if took > timeout + GRACE_SECONDS:
            problems.append("run %s of '%s' is past its timeout of %s (running %s)"
                            % (run_id, label, seconds(timeout), measured(took)))
    return _listed(problems, 'more runs are past their timeout')


def failure_problems(failures=FAILURES):
    """Tasks whose last `failures` or more runs all ended in error, timeout or lost."""
    failing = unsettled_tasks().filter(failures__gte=failures).order_by('label', 'pk')
    with simple_plans():
        found = list(failing.values_list('label', 'failures'))
    problems = ["task '%s' failed %d times in a row" % row for row in found[:LISTED]]
    if len(found) > LISTED:
        problems.append('and %d more tasks failed %d or more times in a row'
                        % (len(found) - LISTED, failures))
    return problems


def disabled_problems():
    """Tasks Sisy disabled itself (its function or row is gone, its schedule went bad)."""
    disabled = (Task.objects.filter(enabled=False).exclude(disabled_reason='')
                .order_by('label', 'pk'))
    found = list(disabled.values_list('label', 'disabled_reason')[:LISTED + 1])
    problems = ["task '%s' was disabled by Sisy: %s"
                % (label, (reason.strip().splitlines() or [''])[0]) for label, reason in found]
    if len(problems) > LISTED:
        problems[LISTED:] = ['and %d more tasks were disabled by Sisy'
                             % (disabled.count() - LISTED)]
    return problems


def _listed(problems, more):
    if len(problems) > LISTED:
        problems[LISTED:] = ['and %d %s' % (len(problems) - LISTED, more)]
    return problems


def problems(now, checks=CHECKS, tick_periods=TICK_PERIODS, max_wait=None,
             failures=FAILURES):
    """Every problem the named `checks` find at `now`, in the order of CHECKS."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError('Unknown health check(s) %s; the checks are %s.'
                         % (', '.join(unknown), ', '.join(CHECKS)))
    found = []
    if 'tick' in checks:
        found += tick_problems(now, tick_periods)
    if 'waiting' in checks:
        found += waiting_problems(now, max_wait)
    if 'timeout' in checks:
        found += timeout_problems(now)
    if 'failures' in checks:
        found += failure_problems(failures)
    if 'disabled' in checks:
        found += disabled_problems()
    return found


def summary(now, last=UNREAD, figures=None):
    """'last tick 4 s ago; 0 waiting', from a last_tick() and a queue() already read.

    Hand-off jobs are counted among the runs waiting, and said apart when there are some.
    """
    last = last_tick() if last is UNREAD else last
    figures = queue(now) if figures is None else figures
    tick = ('no tick processed yet' if last is None
            else 'last tick %s ago' % measured((now - last).total_seconds()))
    waiting = '%d waiting' % figures['due']
    if figures['oldest'] is not None:
        waiting += ' (oldest %s)' % measured((now - figures['oldest']).total_seconds())
    if figures['jobs']:
        waiting += ', %s (oldest %s)' % (
            _of_them(figures['jobs']), measured((now - figures['oldest_job']).total_seconds()))
    if figures['delayed']:
        waiting += ', %d waiting to retry' % figures['delayed']
    if figures['later']:
        waiting += ', %s due later (run_after)' % _count(figures['later'], 'hand-off job')
    return '%s; %s' % (tick, waiting)


def banner(now):
    """What the admin's task list shows, in two queries: the summary and its problems.

    Covers the scheduler itself (ticks and the queue); ``sisy_health`` also checks
    runs past their timeout and failing or disabled tasks, which the list's own
    columns and filters show.
    """
    last = last_tick()
    max_wait = default_max_wait()
    figures = queue(now, max_wait)
    found = tick_problems(now, TICK_PERIODS, last) + waiting_problems(now, max_wait, figures)
    return {'summary': summary(now, last, figures), 'problems': found}
