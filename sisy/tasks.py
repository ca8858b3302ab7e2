"""Hand off a function call to a worker, in the shape of Django's tasks framework.

::

    from sisy.tasks import task

    @task(retries=2)
    def send_receipt(order_id):
        ...

    result = send_receipt.enqueue(order_id=42)   # in a view: returns at once
    send_receipt.get_result(result.id).status    # READY, RUNNING, SUCCESSFUL, FAILED

Code written this way moves to django.tasks (Django 6) by changing the import.
A job is a single run record (sisy.lifecycle.add_job), claimed by the worker
that takes it, so it runs once, with the timeout, retries, stop, signals and
history every run has; a worker is woken for it when the caller's transaction
commits.
"""

import copy
import datetime as dt
import functools

from django.utils import timezone

from sisy import lifecycle, testing
from sisy.callables import job_path
from sisy.conf import setting
from sisy.results import (  # noqa: F401 (the API names users import from here)
    TaskContext, TaskError, TaskResult, TaskResultDoesNotExist, TaskResultStatus, runs_of)
from sisy.validation import (
    DEFAULT_QUEUE, MAX_RETRIES, MAX_SECONDS, check_arguments, count_problem, priority_problem,
    queue_problem, seconds_problem)

DEFAULT_PRIORITY = 0


class InvalidTask(ValueError):
    """A task's options (priority, queue, run_after, timeout, retries) are not usable."""


class TaskResultMismatch(ValueError):
    """get_result() was given the id of another function's job."""


class Task:
    """A function made into a hand-off job by @task (not sisy.models.Task, a cron task).

    Calling the function itself is left to `call()`, so a forgotten
    `.enqueue` fails loudly instead of running in the request.
    """

    def __init__(self, func, priority=DEFAULT_PRIORITY, queue_name=DEFAULT_QUEUE,
                 run_after=None, timeout=None, retries=0, retry_delay=60, takes_context=False):
        self.func, self.priority, self.queue_name = func, priority, queue_name
        self.run_after, self.timeout, self.retries = run_after, timeout, retries
        self.retry_delay, self.takes_context = retry_delay, bool(takes_context)
        self.name = getattr(func, '__name__', repr(func))
        self.module_path = '%s.%s' % (getattr(func, '__module__', '?'),
                                      getattr(func, '__qualname__', self.name))
        self._path = None  # 'module:qualname', worked out at the first enqueue
        functools.update_wrapper(self, func, updated=())
        self._check()

    def __repr__(self):
        return '<sisy Task %s>' % self.module_path

    def _check(self):
        problems = [priority_problem(self.priority),
                    queue_problem(self.queue_name),
                    _run_after_problem(self.run_after),
                    seconds_problem(self.timeout, 'timeout', positive=True),
                    count_problem(self.retries, 'retries', '0 (no retries)', MAX_RETRIES,
                                  "the last attempt's number must fit the database"),
                    seconds_problem(self.retry_delay, 'retry_delay', positive=False)]
        problems = [problem for problem in problems if problem]
        if problems:
            raise InvalidTask('Task %s: %s' % (self.module_path, ' '.join(problems)))

    def using(self, priority=None, queue_name=None, run_after=None):
        """A copy with other options; this task is left as it is."""
        changed = copy.copy(self)
        if priority is not None:
            changed.priority = priority
        if queue_name is not None:
            changed.queue_name = queue_name
        if run_after is not None:
            changed.run_after = run_after
        changed._check()
        return changed

    def enqueue(self, *args, **kwargs):
        """Store the call for a worker; return its TaskResult (READY).

        One INSERT, committed with the caller's transaction (at once outside
        one); a worker is woken when it commits, or, with run_after, at the
        first tick at or after that time. Arguments must be JSON data: a
        TypeError names the first that is not, before anything is written.
        """
        check_arguments(args, kwargs)
        if self._path is None:
            try:
                self._path = job_path(self.func)
            except ValueError as error:
                raise InvalidTask(str(error))
        now = timezone.now()
        not_before = self.run_after
        if isinstance(not_before, dt.timedelta):
            not_before = now + not_before
        # Eager: run here, with no doorbell to wake a worker that would race this process.
        eager = setting('SISY_ALWAYS_EAGER') and lifecycle.is_due(not_before, now)
        run = lifecycle.add_job(
            self._path, self.module_path, {'args': list(args), 'kwargs': kwargs},
            {'timeout': self.timeout, 'retries': self.retries, 'retry_delay': self.retry_delay,
             'takes_context': self.takes_context},
            self.priority, self.queue_name, not_before=not_before, now=now, ring=not eager)
        result = TaskResult(self, [run])
        if eager:
            testing.run_job_eagerly(run)
            result.refresh()
        return result

    def call(self, *args, **kwargs):
        """Run the function here and now, as a plain call; return what it returns.

        With takes_context, it gets a context of attempt 1 and no result.
        """
        if self.takes_context:
            return self.func(TaskContext(None, 1), *args, **kwargs)
        return self.func(*args, **kwargs)

    def get_result(self, result_id):
        """The TaskResult of this task's job `result_id`, as it stands now."""
        runs = runs_of(result_id)
        if self._path is None:
            self._path = job_path(self.func)
        if runs[0].function != self._path:
            raise TaskResultMismatch('Job %s is a job of %s, not of %s.' % (
                result_id, runs[0].function.replace(':', '.'), self.module_path))
        return TaskResult(self, runs)


def task(function=None, priority=DEFAULT_PRIORITY, queue_name=DEFAULT_QUEUE, timeout=None,
         retries=0, retry_delay=60, takes_context=False):
    """Make `function` a Task: `@task`, or `@task(priority=..., queue_name=..., ...)`.

    priority: -100 to 100, higher first among jobs waiting; queue_name: one of
    SISY_QUEUES; timeout: seconds (None: no limit); retries: further attempts
    after an error, a timeout or a lost worker, retry_delay seconds apart;
    takes_context: the function gets a TaskContext first.
    """
    def make(func):
        return Task(func, priority=priority, queue_name=queue_name, timeout=timeout,
                    retries=retries, retry_delay=retry_delay, takes_context=takes_context)
    return make(function) if function is not None else make


def _run_after_problem(value):
    if value is None or isinstance(value, dt.timedelta):
        return None
    if isinstance(value, dt.datetime) and not timezone.is_naive(value):
        return None
    return ('run_after must be an aware datetime or a timedelta; got %r. (Example: '
            'timezone.now() + timedelta(minutes=5), or timedelta(minutes=5).)' % (value,))
