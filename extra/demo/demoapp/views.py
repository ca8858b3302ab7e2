"""The demo page: Sisy's tasks and recent runs, and a button that hands off a @task job.

The button enqueues demoapp.tasks.tally and keeps the job's id in the session,
as a site keeps the id of work it handed off; the page and the small JSON view
read the job again with get_result.
"""

import json

from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from demoapp.models import Counter
from demoapp.tasks import tally
from sisy.models import Task, TaskRun
from sisy.tasks import TaskResultDoesNotExist, TaskResultStatus

SESSION_KEY = 'demo_job_ids'
JOBS_SHOWN = 5
WORK_SECONDS = 1  # long enough for the page to catch the job RUNNING


def index(request):
    jobs = []
    for job_id in request.session.get(SESSION_KEY, []):
        try:
            jobs.append(describe(tally.get_result(job_id)))
        except TaskResultDoesNotExist:  # pruned with the run history
            continue
    return render(request, 'demoapp/index.html', {
        'now': timezone.now(),
        'tasks': Task.objects.order_by('label'),
        'runs': TaskRun.objects.all()[:15],
        'counters': Counter.objects.all(),
        'jobs': jobs,
        'work_seconds': WORK_SECONDS,
    })


@require_POST
def hand_off(request):
    """Enqueue the tally job and return at once; a worker starts it within milliseconds."""
    result = tally.enqueue(WORK_SECONDS, fail=bool(request.POST.get('fail')))
    kept = request.session.get(SESSION_KEY, [])
    request.session[SESSION_KEY] = ([result.id] + kept)[:JOBS_SHOWN]
    messages.info(request, 'Enqueued job %s (tally.enqueue(%s)): a worker starts it as soon as '
                  'this request has committed.' % (result.id, describe(result)['arguments']))
    return redirect('index')


def job(request, job_id):
    """The job's state as JSON, for the page to poll until it has finished."""
    try:
        result = tally.get_result(job_id)
    except (TaskResultDoesNotExist, ValueError):  # no such job, or another function's
        raise Http404('No tally job %s.' % job_id)
    return JsonResponse(describe(result))


def describe(result):
    """What the page and the JSON view show of a TaskResult, as JSON-ready values."""
    successful = result.status == TaskResultStatus.SUCCESSFUL
    started_after = None
    if result.started_at is not None:
        started_after = round((result.started_at - result.enqueued_at).total_seconds() * 1000, 1)
    return {
        'id': result.id,
        'arguments': ', '.join([repr(value) for value in result.args]
                               + ['%s=%r' % (name, value)
                                  for name, value in sorted(result.kwargs.items())]),
        'status': str(result.status),
        'finished': result.is_finished,
        'return_value': json.dumps(result.return_value) if successful else '',
        'errors': [error.exception_class_path for error in result.errors],
        'attempts': result.attempts,
        'enqueued_at': result.enqueued_at.isoformat(),
        'started_after_ms': started_after,
    }
