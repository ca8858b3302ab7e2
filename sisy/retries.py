"""When a run that ended gets another attempt, and how many attempts one slot may have.

An attempt is a new pending run for the same slot with the next attempt
number. A task's `retries` give a failed run that many more attempts,
`retry_delay` seconds apart. A lost run of a job with no slot left (a
run_once, the last of run_iterations) or of a hand-off job (sisy.tasks) is
attempted again even without retries, so a worker dying under it never drops
the job silently. A hand-off job keeps its retry settings on its run.
"""

from sisy.models import TaskRun

# Attempts in all for a lost run of a task with no slot left (or 1 + retries, if more).
FINAL_RUN_ATTEMPTS = 3


def retry_delay(task, run, outcome):
    """Seconds until the next attempt of `run`, or None if it gets no further attempt.

    `task` is the run's Task; None for a hand-off job, whose run holds its settings.
    """
    if outcome not in TaskRun.RETRYABLE:
        return None
    if run.is_job:
        options = run.job_options
        retries, delay, last_slot = options.get('retries', 0), options.get('retry_delay', 60), True
    else:
        retries, delay, last_slot = task.retries, task.retry_delay, task.finished_at is not None
    if run.attempt <= retries:
        return delay
    if outcome == TaskRun.LOST and last_slot \
            and run.attempt < _allowed(retries, lost_final_run=True):
        return 0  # the job's only chance: the lease already made it wait
    return None


def attempts_allowed(task, lost_final_run=False):
    """How many attempts one slot of `task` may have: 1 + retries, more for a lost last run."""
    return _allowed(task.retries, lost_final_run)


def _allowed(retries, lost_final_run):
    allowed = 1 + retries
    return max(allowed, FINAL_RUN_ATTEMPTS) if lost_final_run else allowed
