from django.db import models


class ProbeRun(models.Model):
    """One call of a probe function (tests.integration.probe.tasks), written by the call itself.

    A hand-off job's row has its job id in run_id and its attempt number in attempt.
    """
    label = models.CharField(max_length=255)
    tag = models.CharField(max_length=100, blank=True)
    run_id = models.IntegerField(null=True)
    pid = models.IntegerField()
    at = models.DateTimeField()
    ended = models.DateTimeField(null=True)
    attempt = models.IntegerField(default=1)
