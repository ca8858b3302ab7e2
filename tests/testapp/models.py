"""Models whose instance methods the tests run as tasks, one per primary key type."""

import uuid

from django.db import models


class Counter(models.Model):
    """Integer primary key."""
    name = models.CharField(max_length=50)
    hits = models.IntegerField(default=0)

    def bump(self, message):
        Counter.objects.filter(pk=self.pk).update(hits=models.F('hits') + 1)

    def wrong_signature(self, msg):
        pass

    @classmethod
    def bump_all(cls, message):
        cls.objects.update(hits=models.F('hits') + 1)

    @staticmethod
    def static_bump(message):
        Counter.objects.update(hits=models.F('hits') + 1)


class UUIDThing(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    hits = models.IntegerField(default=0)

    def bump(self, message):
        UUIDThing.objects.filter(pk=self.pk).update(hits=models.F('hits') + 1)


class NamedThing(models.Model):
    code = models.CharField(max_length=20, primary_key=True)
    hits = models.IntegerField(default=0)

    def bump(self, message):
        NamedThing.objects.filter(pk=self.pk).update(hits=models.F('hits') + 1)


class Call(models.Model):
    """One row per call of a test task function, written by the function itself."""
    label = models.CharField(max_length=255)
    run_id = models.IntegerField(null=True)
    at = models.DateTimeField(auto_now_add=True)
