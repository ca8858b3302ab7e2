"""What became of a hand-off job (sisy.tasks): its TaskResult, read from its runs.

A job is one pending run when enqueued; each further attempt is a run of its
own that points at the first (`first_attempt`), whose id is the job's. The
names follow Django's tasks framework (django.tasks), so code moves to it with
an import change.
"""

import enum
import json
import re

from django.db.models import Q

from sisy.models import TaskRun

# The last line of a traceback: the exception's (dotted) class, then its message.
EXCEPTION_LINE = re.compile(r'^([A-Za-z_][\w.]*)(?::|$)')
TRACEBACK_START = 'Traceback (most recent call last):'


class TaskResultStatus(str, enum.Enum):
    """Where a job stands, with django.tasks' names and values (equal to their strings)."""

    READY = 'READY'            # waiting for a worker (or for its next attempt)
    RUNNING = 'RUNNING'
    SUCCESSFUL = 'SUCCESSFUL'
    FAILED = 'FAILED'          # its last attempt failed, with no attempt to follow

    def __str__(self):
        return self.value


STATUS_OF_RUN = {TaskRun.PENDING: TaskResultStatus.READY,
                 TaskRun.RUNNING: TaskResultStatus.RUNNING,
                 TaskRun.OK: TaskResultStatus.SUCCESSFUL}


class TaskResultDoesNotExist(LookupError):
    """No job has that id (it never existed, or its history was pruned)."""


class TaskError:
    """One failed attempt: the exception's dotted class path and the traceback recorded."""

    def __init__(self, exception_class_path, traceback):
        self.exception_class_path, self.traceback = exception_class_path, traceback

    def __repr__(self):
        return '<TaskError %s>' % self.exception_class_path

    def __eq__(self, other):
        return isinstance(other, TaskError) and (
            (self.exception_class_path, self.traceback)
            == (other.exception_class_path, other.traceback))


class TaskContext:
    """What a job made with takes_context=True is called with first.

    task_result is None when the function is run with Task.call(), as no job exists.
    """

    def __init__(self, task_result, attempt):
        self.task_result, self.attempt = task_result, attempt

    def __repr__(self):
        job = self.task_result.id if self.task_result is not None else None
        return '<TaskContext job %s attempt %s>' % (job, self.attempt)


class TaskResult:
    """A job's state and outcome; `refresh()` reads it again from the database."""

    def __init__(self, task, runs):
        self.task = task
        self._load(runs)

    def __repr__(self):
        return '<TaskResult %s %s: %s>' % (self.id, self._function, self.status)

    @property
    def is_finished(self):
        return self.status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)

    @property
    def return_value(self):
        """What the function returned, once SUCCESSFUL; ValueError before (or if it failed)."""
        if self.status != TaskResultStatus.SUCCESSFUL:
            raise ValueError('Job %s has no return value: it is %s.' % (self.id, self.status))
        return self._return_value

    def refresh(self):
        """Read the job's state again."""
        self._load(runs_of(self.id))

    def _load(self, runs):
        first, last = runs[0], runs[-1]
        self.id = str(first.job_id)  # its first attempt's, even once that is pruned
        self._function = first.function
        arguments = json.loads(first.arguments or '{}')
        self.args, self.kwargs = arguments.get('args', []), arguments.get('kwargs', {})
        self.status = STATUS_OF_RUN.get(last.status, TaskResultStatus.FAILED)
        self.enqueued_at = first.created_at
        started = [run.started_at for run in runs if run.started_at is not None]
        self.started_at = started[0] if started else None
        self.last_attempted_at = started[-1] if started else None
        self.finished_at = last.finished_at if self.is_finished else None
        self.attempts = sum(1 for run in runs if run.status in TaskRun.ATTEMPTED
                            or run.status == TaskRun.RUNNING)
        self.worker_ids = ['%s pid %s' % (run.host, run.pid) for run in runs if run.host]
        self.errors = [TaskError(exception_class_path(run.error), run.error)
                       for run in runs if run.status not in (TaskRun.OK,) + TaskRun.ACTIVE]
        self._return_value = (json.loads(last.return_value) if last.return_value
                              and self.status == TaskResultStatus.SUCCESSFUL else None)


def runs_of(job_id):
    """The runs of the job `job_id` (an int or its string), first attempt first."""
    try:
        number = int(job_id)
    except (TypeError, ValueError):
        raise TaskResultDoesNotExist('No job has the id %r; ids are whole numbers.' % (job_id,))
    runs = list(TaskRun.objects.exclude(function='')
                .filter(Q(pk=number, first_attempt=None) | Q(first_attempt=number))
                .order_by('attempt', 'pk'))
    if not runs:
        raise TaskResultDoesNotExist('No job has the id %r (its history may have been '
                                     'pruned: SISY_RUN_HISTORY_DAYS).' % (job_id,))
    return runs


def exception_class_path(error):
    """The dotted class of the exception a recorded traceback ends with.

    Built-in exceptions get 'builtins.', as Django's tasks framework names them.
    A run lost with its worker has no traceback: sisy.runner.RunInterrupted.
    """
    if TRACEBACK_START not in (error or ''):
        return 'sisy.runner.RunInterrupted'
    lines = error.splitlines()
    # The exception's line is the first one after the last traceback's indented frames;
    # its message may go on over more lines ("DETAIL: ..."), which must not be taken
    # for it.
    start = max(number for number, line in enumerate(lines) if TRACEBACK_START in line)
    following = [line for line in lines[start + 1:] if line and not line[0].isspace()]
    for line in following[:1] + list(reversed(lines)):
        found = EXCEPTION_LINE.match(line)
        if found:
            name = found.group(1)
            return name if '.' in name else 'builtins.%s' % name
    return 'sisy.runner.RunInterrupted'
