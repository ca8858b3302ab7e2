"""The hand-off benchmark's @task (handoff.py): imported only where sisy.tasks exists."""

from sisy.tasks import task

import bench_tasks


@task
def stamp(key):
    """Note `key` and the time the function started (bench_tasks.note)."""
    bench_tasks.note(key)
