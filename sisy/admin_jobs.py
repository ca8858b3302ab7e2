"""The run history's view of hand-off jobs (sisy.tasks): their call in words, and Run again.

A job's run keeps what to call as JSON (function, arguments, options); these
turn it into what an operator reads, and enqueue a finished job's call again
through sisy.lifecycle, as sisy.tasks does.
"""

import collections
import json
import pprint
import textwrap

from django.contrib import messages
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from sisy import lifecycle
from sisy.callables import load_job
from sisy.errors import first_line
from sisy.health import seconds
from sisy.models import TaskRun
from sisy.validation import queue_problem


def job_url(job_id):
    """The run history filtered to the attempts of one job."""
    return '%s?job=%s' % (reverse('admin:sisy_taskrun_changelist'), job_id)


def loaded(text):
    """A JSON column's value, or the text itself if it is not JSON (it never should be)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def call_text(run, width=None):
    """A job's call as Python would write it: send_receipt(42, to='ops').

    With `width`, on one line cut to that many characters; without, laid out
    over several lines when it is long.
    """
    name = run.function.rpartition(':')[2] or run.function
    arguments = loaded(run.arguments or '{}')
    if not isinstance(arguments, dict):
        return '%s(%s)' % (name, arguments)
    args, kwargs = arguments.get('args', []), arguments.get('kwargs', {})
    if width is not None:
        parts = [repr(value) for value in args]
        parts += ['%s=%r' % (key, value) for key, value in kwargs.items()]
        return shortened('%s(%s)' % (name, ', '.join(parts)), width)
    parts = [pprint.pformat(value, width=76, compact=True) for value in args]
    for key, value in kwargs.items():
        shown = pprint.pformat(value, width=75 - len(key), compact=True)
        parts.append('%s=%s' % (key, shown.replace('\n', '\n' + ' ' * (len(key) + 1))))
    one_line = '%s(%s)' % (name, ', '.join(parts))
    if len(one_line) <= 80 and '\n' not in one_line:
        return one_line
    return '%s(\n%s\n)' % (name, ',\n'.join(
        textwrap.indent(part, '    ') for part in parts))


def returned_text(run, width=None):
    """What a job returned, as Python would write it; laid out over lines of `width`, if given."""
    value = loaded(run.return_value)
    return repr(value) if width is None else pprint.pformat(value, width=width, compact=True)


def options_text(run):
    """A job's timeout, retries and context in words."""
    options = run.job_options
    timeout, retries = options.get('timeout'), options.get('retries') or 0
    parts = ['timeout %s' % seconds(timeout) if timeout is not None else 'no timeout']
    if retries:
        parts.append('%d %s, %s apart' % (retries, 'retry' if retries == 1 else 'retries',
                                          seconds(options.get('retry_delay') or 0)))
    else:
        parts.append('no retries')
    if options.get('takes_context'):
        parts.append('takes a context')
    return '; '.join(parts)


def shortened(text, width):
    """`text` cut to `width` characters, an ellipsis showing where."""
    return text if len(text) <= width else text[:width - 1] + '\u2026'


def enqueue_again(model_admin, request, queryset):
    """Enqueue once more the call of each finished hand-off job selected; say what happened."""
    runs = list(queryset.order_by('pk').values(
        'pk', 'task_label', 'status', 'function', 'arguments', 'options', 'priority',
        'queue_name', 'first_attempt'))
    jobs = [run for run in runs if run['function']]
    job_ids = {run['first_attempt'] or run['pk'] for run in jobs}
    busy = {first or pk for pk, first in TaskRun.objects.exclude(function='')
            .filter(status__in=TaskRun.ACTIVE)
            .filter(Q(pk__in=job_ids, first_attempt=None) | Q(first_attempt__in=job_ids))
            .values_list('pk', 'first_attempt')} if job_ids else set()
    refused = collections.OrderedDict((reason, []) for reason in REFUSALS)
    refused['not a job'] = ['%s (run %s)' % (run['task_label'], run['pk'])
                            for run in runs if not run['function']]
    chosen, importable = collections.OrderedDict(), {}
    for run in jobs:
        job_id = run['first_attempt'] or run['pk']
        name = '%s (run %s' % (run['task_label'], run['pk'])
        if run['status'] in TaskRun.ACTIVE:
            refused['not finished'].append('%s, %s)' % (name, run['status']))
        elif job_id in busy:
            refused['not finished'].append('%s: job %s has an attempt still to run)'
                                           % (name, job_id))
        elif queue_problem(run['queue_name']):
            refused['queue'].append("%s, queue '%s')" % (name, run['queue_name']))
        else:
            if run['function'] not in importable:
                importable[run['function']] = _import_problem(run['function'])
            if importable[run['function']]:
                refused['gone'].append('%s: %s)' % (name, importable[run['function']]))
            else:
                chosen.setdefault(job_id, run)  # one new job per job, however many rows
    made = []
    with transaction.atomic():  # all or none; the workers are woken when it commits
        for job_id, run in chosen.items():
            new = lifecycle.add_job(run['function'], run['task_label'],
                                    loaded(run['arguments'] or '{}'),
                                    loaded(run['options'] or '{}'),
                                    run['priority'], run['queue_name'])
            made.append('job %s as job %s (%s)' % (job_id, new.pk, run['task_label']))
    if made:
        model_admin.message_user(request, 'Enqueued the same call again, as a new job (a worker '
                                          'must be running): %s.' % _listing(made))
    for reason, names in refused.items():
        if names:
            model_admin.message_user(request, '%s: %s.' % (REFUSALS[reason], _listing(names)),
                                     messages.WARNING)
    return len(made)


REFUSALS = collections.OrderedDict([
    ('not a job', 'Not run again, as only hand-off jobs can be (a task runs on its schedule, '
                  'or with "Run selected tasks now")'),
    ('not finished', 'Not run again, as they have not finished'),
    ('queue', 'Not run again, as their queue is not one of SISY_QUEUES now'),
    ('gone', 'Not run again, as their function cannot be imported now'),
])


def _import_problem(function):
    """Why a job's function cannot be imported here now, or '' if it can."""
    try:
        load_job(function)
    except Exception as error:  # removed, renamed, or its module fails to import
        return '%s: %s' % (type(error).__name__, first_line(error))
    return ''


def _listing(names, limit=10):
    more = ' and %d more' % (len(names) - limit) if len(names) > limit else ''
    return ', '.join(names[:limit]) + more
