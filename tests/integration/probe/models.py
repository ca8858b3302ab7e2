from django.db import models


class ProbeRun(models.Model):
    """One call of tests.integration.probe.tasks.record, written by the call itself."""
    label = models.CharField(max_length=255)
    tag = models.CharField(max_length=100, blank=True)
    run_id = models.IntegerField(null=True)
    pid = models.IntegerField()
    at = models.DateTimeField()
    ended = models.DateTimeField(null=True)
