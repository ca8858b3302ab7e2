"""Keep the run history bounded: finished runs older than SISY_RUN_HISTORY_DAYS go.

Ticks call `prune_now_and_then()`; it deletes at most once per PRUNE_INTERVAL in
a process, with one DELETE on the indexed `created_at` column. The ledger's
events and the tick records of workers gone for as long go with them.
"""

import datetime as dt
import logging
import threading
import time

from django.db.models import Max
from django.utils import timezone

from sisy.conf import setting
from sisy.models import SlotEvent, TaskRun, TickRecord

log = logging.getLogger('sisy.history')

PRUNE_INTERVAL = 10 * 60  # seconds

_lock = threading.Lock()
_next_prune = 0.0


def prune_runs(now):
    """Delete finished runs created more than SISY_RUN_HISTORY_DAYS before `now`.

    Returns how many were deleted. Pending and running runs are never deleted:
    they still have work to do. None (or an unusable value) keeps everything.
    """
    days = setting('SISY_RUN_HISTORY_DAYS')
    if days is None:
        return 0
    try:
        if isinstance(days, bool) or float(days) < 0:
            raise ValueError
        cutoff = now - dt.timedelta(days=float(days))
    except (TypeError, ValueError, OverflowError):
        log.error('SISY_RUN_HISTORY_DAYS=%r is not a number of days (e.g. 30) or None; '
                  'keeping all run history', days)
        return 0
    deleted, _ = TaskRun.objects.filter(created_at__lt=cutoff, status__in=TaskRun.DONE).delete()
    SlotEvent.objects.filter(created_at__lt=cutoff).delete()
    prune_ticks(cutoff)
    if deleted:
        log.info('Deleted %d run record(s) older than %s days', deleted, days)
    return deleted


def prune_ticks(cutoff):
    """Delete the tick records of workers that have handled no tick since `cutoff`.

    The rows holding the newest tick and the newest handling stay, whatever
    their age: health and metrics read the one, the ledger the other, so a
    scheduler stopped for longer than the history still shows when it last ran.
    """
    newest = TickRecord.objects.aggregate(tick=Max('tick'), handled=Max('processed_at'))
    if newest['handled'] is None:
        return
    TickRecord.objects.filter(processed_at__lt=min(cutoff, newest['handled']),
                              tick__lt=newest['tick']).delete()


def prune_now_and_then(clock=time.monotonic):
    """Prune if this process has not done so in the last PRUNE_INTERVAL seconds."""
    global _next_prune
    with _lock:
        if clock() < _next_prune:
            return 0
        _next_prune = clock() + PRUNE_INTERVAL
    return prune_runs(timezone.now())
