"""The probe app's config: installs the fault-injection hook in the processes it runs in.

With SISY_IT_CRASH_AT=<point> and SISY_IT_CRASH_LABEL=<task label> in a
worker's environment, the worker SIGKILLs itself at that point of the first
run of that task (points: taken, inside, returned, recorded). The marker file
SISY_IT_CRASH_MARK makes it happen once, even across restarted workers.
"""

import os
import signal

from django.apps import AppConfig


def crash_here(point, label):
    """SIGKILL this process if the environment asks for a crash at `point` of task `label`."""
    mark = os.environ.get('SISY_IT_CRASH_MARK')
    if (os.environ.get('SISY_IT_CRASH_AT') != point or not mark
            or os.environ.get('SISY_IT_CRASH_LABEL') != label):
        return
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # crashed there once already
    os.kill(os.getpid(), signal.SIGKILL)


class ProbeConfig(AppConfig):
    name = 'tests.integration.probe'

    def ready(self):
        from sisy import runner
        runner.checkpoint = lambda point, run: crash_here(point, run.task_label)
