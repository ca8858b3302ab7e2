"""The task function the real-process tests schedule."""

import os

from django.utils import timezone

from tests.integration.probe.models import ProbeRun


def record(message):
    """Write down this call: which task, its tag, the run it served, where and when."""
    task = message['task']
    ProbeRun.objects.create(
        label=task.label, tag=str(task.userdata.get('tag', '')),
        run_id=message['message'].content.get('run_id'), pid=os.getpid(), at=timezone.now())
