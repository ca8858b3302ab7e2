"""Is the scheduler healthy? Each check reads a few rows and says what is wrong, in words.

The checks take `now` (an aware datetime) and return a list of problems, one
line each, empty when all is well. ``manage.py sisy_health`` runs them for
monitors, the admin's task list shows the cheap two (ticks and the queue) in a
banner, and :mod:`sisy.metrics` reads the same numbers for Prometheus.
"""

import contextlib
import datetime as dt

from django.db import connection, transaction
from django.db.models import (Case, F, Func, IntegerField, Max, Min, OuterRef, Q, Subquery,
                              Sum, Value, When)
from django.db.models.functions import Coalesce

from sisy.conf import setting
from sisy.models import Task, TaskRun, TickRecord
from sisy.runner import GRACE_SECONDS

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
    """The pending runs, in one query, as a dict.

    ``due``: runs a worker may take now; ``delayed``: further attempts waiting for
    their retry delay; ``oldest``: since when the longest-waiting due run has been
    waiting (its claim, or the end of its retry delay), or None; ``late``: due runs
    waiting longer than `max_wait` seconds (None when `max_wait` is None).
    """
    due = Q(not_before__isnull=True) | Q(not_before__lte=now)
    figures = {
        'due': count_where(due),
        'delayed': count_where(~due),
        'oldest': Min(Case(When(due, then=Coalesce('not_before', 'created_at')))),
    }
    if max_wait is not None:
        cutoff = now - dt.timedelta(seconds=max_wait)
        figures['late'] = count_where(Q(not_before__isnull=True, created_at__lt=cutoff) |
                                      Q(not_before__lt=cutoff))
    result = TaskRun.objects.filter(status=TaskRun.PENDING).aggregate(**figures)
    for name in ('due', 'delayed', 'late'):
        result[name] = (result.get(name) or 0) if name in figures else None
    return result


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
    """Runs waiting longer than `max_wait` seconds for a worker (`figures`: a queue())."""
    max_wait = default_max_wait() if max_wait is None else max_wait
    figures = queue(now, max_wait) if figures is None else figures
    if not figures['late']:
        return []
    return ['%s waiting longer than %s (oldest %s)'
            % (_count(figures['late'], 'run'), seconds(max_wait),
               measured((now - figures['oldest']).total_seconds()))]


def timeout_problems(now):
    """Runs still running past their task's timeout and the grace to give way.

    Running runs are few (at most one per worker thread), so they are read and
    compared here rather than in SQL.
    """
    running = (TaskRun.objects.filter(status=TaskRun.RUNNING, task__timeout__isnull=False)
               .order_by('pk').values_list('pk', 'task_label', 'started_at', 'task__timeout'))
    problems = []
    for run_id, label, started, timeout in running:
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
    """'last tick 4 s ago; 0 waiting', from a last_tick() and a queue() already read."""
    last = last_tick() if last is UNREAD else last
    figures = queue(now) if figures is None else figures
    tick = ('no tick processed yet' if last is None
            else 'last tick %s ago' % measured((now - last).total_seconds()))
    waiting = '%d waiting' % figures['due']
    if figures['oldest'] is not None:
        waiting += ' (oldest %s)' % measured((now - figures['oldest']).total_seconds())
    if figures['delayed']:
        waiting += ', %d waiting to retry' % figures['delayed']
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
