"""When a run that ended gets another attempt, and how many attempts one slot may have.

An attempt is a new pending run for the same slot with the next attempt
number. A task's `retries` give a failed run that many more attempts,
`retry_delay` seconds apart. A lost run of a job with no slot left (a
run_once, the last of run_iterations) is attempted again even without retries,
so a worker dying under it never drops the job silently.
"""

from sisy.models import TaskRun

# Attempts in all for a lost run of a task with no slot left (or 1 + retries, if more).
FINAL_RUN_ATTEMPTS = 3


def retry_delay(task, run, outcome):
    """Seconds until the next attempt of `run`, or None if it gets no further attempt."""
    if outcome not in TaskRun.RETRYABLE:
        return None
    if run.attempt <= task.retries:
        return task.retry_delay
    if outcome == TaskRun.LOST and task.finished_at is not None \
            and run.attempt < attempts_allowed(task, lost_final_run=True):
        return 0  # the job's only chance: the lease already made it wait
    return None


def attempts_allowed(task, lost_final_run=False):
    """How many attempts one slot of `task` may have: 1 + retries, more for a lost last run."""
    allowed = 1 + task.retries
    return max(allowed, FINAL_RUN_ATTEMPTS) if lost_final_run else allowed
