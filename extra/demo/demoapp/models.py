"""A model whose instance method runs as a Sisy task."""

import logging
import os

from django.db import models
from django.db.models import F

log = logging.getLogger('demoapp')


def current_pid():
    """The default of the removed OneOffRun.pid; migration 0001 still imports it."""
    return os.getpid()


class Counter(models.Model):
    """A named count that a standing task bumps (an instance-method task)."""
    name = models.SlugField(unique=True)
    count = models.PositiveIntegerField(default=0)

    def __str__(self):
        return '%s = %d' % (self.name, self.count)

    def bump(self, message):
        """Add one to this counter; Sisy fetched this row again by primary key."""
        Counter.objects.filter(pk=self.pk).update(count=F('count') + 1)
        self.refresh_from_db(fields=['count'])
        log.info('Counter %r is now %d (instance method, task %r)',
                 self.name, self.count, message['task'].label)

