"""Prometheus metrics of Sisy's tasks, runs and ticks, read from the database at each scrape.

Nothing is counted in memory: each scrape builds a fresh registry whose one
collector asks the database, so every web process answers the same and no
worker has to take part. The cost is bounded: a few aggregate queries, per-task
series for at most SISY_METRICS_TASK_LIMIT labels, and at most RECENT_RUNS runs
for the recent-window summaries.

prometheus_client is imported by the functions that use it: the URLconf that
includes sisy.urls is loaded by every process's system checks, workers and
heartbeat too, and only a scrape needs it.
"""

import datetime as dt
import hmac
import math

from django.db.models import Case, Max, Min, Q, When
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from sisy import health
from sisy.conf import setting
from sisy.models import Task, TaskRun

RECENT_SECONDS = 600   # the window of the run summaries: runs claimed in the last 10 minutes
RECENT_RUNS = 10000    # at most this many of them, the newest
QUANTILES = (0.5, 0.9, 0.99)
CHUNK = 500            # labels per IN (...) list; old SQLite allows 999 parameters


class SisyCollector:
    """Reads Sisy's state at `now` (default: when collected) for one scrape."""

    def __init__(self, now=None, task_limit=None):
        self.now = now
        self.task_limit = task_limit

    def collect(self):
        """Every metric family, read in one transaction on PostgreSQL (see simple_plans())."""
        now = self.now or timezone.now()
        limit = self.task_limit
        if limit is None:
            limit = setting('SISY_METRICS_TASK_LIMIT')
        with health.simple_plans():
            families = [*task_states(), *queue_metrics(now), *tick_metrics(now),
                        *task_series(limit), *recent_runs(now)]
        return families


def _gauge(name, documentation, value=None, labels=None):
    from prometheus_client.core import GaugeMetricFamily
    return GaugeMetricFamily(name, documentation, value=value, labels=labels)


def task_states():
    """Tasks by state, in one query over the task table."""
    states = {
        'enabled': Q(enabled=True, finished_at__isnull=True),
        'disabled': Q(enabled=False, finished_at__isnull=True),
        'running': Q(running=True),
        'finished': Q(finished_at__isnull=False),
    }
    # The aliases must not be field names, or the conditions would read the sums.
    counts = Task.objects.aggregate(**{'tasks_' + state: health.count_where(condition)
                                       for state, condition in states.items()})
    family = _gauge('sisy_tasks', 'Tasks by state. enabled (will run again), disabled and '
                                  'finished (no slot left, to be deleted) divide the tasks; '
                                  'running (a run waiting or under way) overlaps them.',
                    labels=['state'])
    for state in states:
        family.add_metric([state], counts['tasks_' + state] or 0)
    yield family


def queue_metrics(now):
    """The pending runs, and the hand-off jobs among them per queue, from one query."""
    figures = health.queue(now)
    family = _gauge('sisy_pending_runs', 'Runs claimed or enqueued and not yet taken by a '
                                         'worker, by what they wait for.',
                    labels=['waiting_for'])
    family.add_metric(['worker'], figures['due'])
    family.add_metric(['retry_delay'], figures['delayed'])
    family.add_metric(['run_after'], figures['later'])
    yield family
    yield _gauge('sisy_oldest_pending_run_age_seconds',
                 'How long the longest-waiting run that a worker may take has waited '
                 '(0 when none waits).', _age(now, figures['oldest']))
    jobs = _gauge('sisy_pending_jobs', 'Hand-off jobs (sisy.tasks) not yet taken by a worker, '
                                       'by queue and what they wait for.',
                  labels=['queue', 'waiting_for'])
    ages = _gauge('sisy_oldest_pending_job_age_seconds',
                  'Per queue: how long the longest-waiting hand-off job that a worker may take '
                  'has waited (0 when none waits).', labels=['queue'])
    # Every queue of SISY_QUEUES has its series, so an alert on one never finds it absent.
    for name in health.queue_names(figures['queues']):
        row = figures['queues'].get(name) or health.EMPTY_QUEUE
        jobs.add_metric([name, 'worker'], row['jobs'])
        jobs.add_metric([name, 'retry_delay'], row['jobs_delayed'])
        jobs.add_metric([name, 'run_after'], row['later'])
        ages.add_metric([name], _age(now, row['oldest_job']))
    yield jobs
    yield ages


def _age(now, since):
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def tick_metrics(now):
    last = health.last_tick()
    yield _gauge('sisy_last_tick_age_seconds',
                 'Seconds since a worker last processed a heartbeat tick (+Inf: never).',
                 math.inf if last is None else max(0.0, (now - last).total_seconds()))
    yield _gauge('sisy_heartbeat_period_seconds', 'SISY_HEARTBEAT_FREQUENCY.',
                 float(setting('SISY_HEARTBEAT_FREQUENCY')))


def task_series(limit):
    """Per-label series: last success, next run and failures in a row.

    Tasks sharing a label share its series (the latest success, the earliest next
    run, the longest streak of failures). At most `limit` labels: those of tasks
    whose last run did not end ok first (latest first), then the others by label.
    """
    unsettled = list(health.unsettled_tasks().order_by('-last_run', 'pk')
                     .values_list('label', 'failures', 'last_success')[:limit])
    failures, last_success = {}, {}
    for label, count, success in unsettled:
        failures[label] = max(count, failures.get(label, 0))
        _keep_latest(last_success, label, success)
    chosen = list(dict.fromkeys(label for label, _, _ in unsettled))
    in_order = list(Task.objects.order_by('label').values_list('label', flat=True)
                    .distinct()[:limit + 1])
    known = set(chosen)
    chosen += [label for label in in_order if label not in known][:max(0, limit - len(chosen))]
    truncated = len(unsettled) >= limit > 0 or len(known | set(in_order)) > limit
    next_run = {}
    for start in range(0, len(chosen), CHUNK):
        rows = (Task.objects.filter(label__in=chosen[start:start + CHUNK]).order_by()
                .values('label').annotate(
                    next_run=Min(Case(When(enabled=True, then='next_run'))),
                    success=Max(Case(When(last_outcome=TaskRun.OK, then='last_run')))))
        for row in rows:
            next_run[row['label']] = row['next_run']
            _keep_latest(last_success, row['label'], row['success'])
    success_family = _gauge('sisy_task_last_success_timestamp_seconds',
                            'When the last run of the task that returned started (absent: '
                            'none in the run history).', labels=['task'])
    next_family = _gauge('sisy_task_next_run_timestamp_seconds',
                         'When the task runs next (absent: disabled or finished).',
                         labels=['task'])
    failure_family = _gauge('sisy_task_consecutive_failures',
                            'Runs in a row that ended in error, timeout or lost.',
                            labels=['task'])
    for label in chosen:
        if last_success.get(label) is not None:
            success_family.add_metric([label], last_success[label].timestamp())
        if next_run.get(label) is not None:
            next_family.add_metric([label], next_run[label].timestamp())
        failure_family.add_metric([label], failures.get(label, 0))
    yield success_family
    yield next_family
    yield failure_family
    yield _gauge('sisy_task_series_truncated',
                 '1 when some task labels were left out of the per-task series '
                 '(SISY_METRICS_TASK_LIMIT).', 1 if truncated else 0)


def _keep_latest(latest, label, when):
    if when is not None and (latest.get(label) is None or when > latest[label]):
        latest[label] = when


def recent_runs(now):
    """Outcomes, durations and start delays of the runs claimed in the last RECENT_SECONDS."""
    since = now - dt.timedelta(seconds=RECENT_SECONDS)
    rows = list(TaskRun.objects.filter(created_at__gte=since, started_at__isnull=False)
                .filter(status__in=TaskRun.ACTIVE + TaskRun.ATTEMPTED).order_by('-created_at')
                .values_list('status', 'duration', 'started_at', 'scheduled_for',
                             'not_before', 'created_at', 'attempt')[:RECENT_RUNS])
    window = 'runs claimed in the last %d s (at most the newest %d)' % (RECENT_SECONDS,
                                                                         RECENT_RUNS)
    statuses = _gauge('sisy_recent_runs', 'Started %s, by status.' % window, labels=['status'])
    for status in (TaskRun.RUNNING,) + TaskRun.ATTEMPTED:
        statuses.add_metric([status], sum(1 for row in rows if row[0] == status))
    yield statuses
    durations = [row[1] for row in rows if row[1] is not None]
    yield _summary('sisy_run_duration_seconds', 'Durations of the finished %s.' % window,
                   durations)
    delays = [max(0.0, (started - _ready(scheduled, not_before, created, attempt))
                  .total_seconds())
              for _, _, started, scheduled, not_before, created, attempt in rows]
    yield _summary('sisy_run_start_delay_seconds',
                   'How late the started %s started: after their slot, or after their '
                   'retry delay.' % window, delays)


def _ready(scheduled, not_before, created, attempt):
    """When a run could first start: its slot, or for a further attempt its retry time."""
    if not_before is not None:
        return not_before
    return scheduled if attempt == 1 else created


def _summary(name, documentation, values):
    from prometheus_client.core import SummaryMetricFamily
    family = SummaryMetricFamily(name, documentation, count_value=len(values),
                                 sum_value=math.fsum(values))
    ordered = sorted(values)
    for quantile in QUANTILES:
        family.add_sample(name, {'quantile': str(quantile)}, _nearest_rank(ordered, quantile))
    return family


def _nearest_rank(ordered, quantile):
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


# -- the view -----------------------------------------------------------------------------


def allowed(request):
    """A logged-in active staff user, or the bearer token of SISY_METRICS_TOKEN."""
    user = getattr(request, 'user', None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = setting('SISY_METRICS_TOKEN')
    scheme, _, given = request.META.get('HTTP_AUTHORIZATION', '').partition(' ')
    if not token or scheme.lower() != 'bearer':
        return False
    return hmac.compare_digest(given.strip().encode('utf-8'), str(token).encode('utf-8'))


@require_safe
@never_cache
def metrics(request):
    """Sisy's metrics in Prometheus' text format (or OpenMetrics if asked); 403 unless allowed()."""
    if not allowed(request):
        return HttpResponseForbidden(
            "Sisy's metrics need a staff login or the header 'Authorization: Bearer "
            "<SISY_METRICS_TOKEN>'.\n", content_type='text/plain; charset=utf-8')
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)  # so registering does not collect
    registry.register(SisyCollector())
    encode, content_type = choose_encoder(request.META.get('HTTP_ACCEPT', ''))
    return HttpResponse(encode(registry), content_type=content_type)
