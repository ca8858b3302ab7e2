"""Signals Sisy sends as runs start and end, and when it disables a task.

Connect receivers as with any Django signal, e.g. in your AppConfig.ready().
Receivers run in the process that sends the signal (usually a task worker),
synchronously, so keep them quick. An exception a receiver raises is logged on
the ``sisy.signals`` logger and goes no further: the run, the recording of its
outcome and the worker carry on. With no receivers connected a send costs no
more than a list check.
"""

import logging

from django.db import DatabaseError, connection, transaction
from django.dispatch import Signal

log = logging.getLogger('sisy.signals')


class SisySignal(Signal):
    """A Django Signal that Sisy sends with `send_safely`, so receivers cannot break it."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return '<SisySignal %s>' % self.name

    def send_safely(self, sender, **arguments):
        """Call each receiver; log what any of them raised instead of raising it.

        Inside a transaction (a TestCase, a claim) the receivers run in a
        savepoint, rolled back if one of them met a database error, so a
        broken statement of theirs cannot spoil Sisy's own writes.
        """
        if not self.receivers or not self.has_listeners(sender):
            return
        if connection.in_atomic_block:
            with transaction.atomic():
                results = self.send_robust(sender, **arguments)
                if any(isinstance(result, DatabaseError) for _, result in results):
                    transaction.set_rollback(True)
        else:
            results = self.send_robust(sender, **arguments)
        for receiver, result in results:
            if isinstance(result, Exception):
                log.error('Receiver %s of sisy.signals.%s raised; Sisy carries on',
                          _name_of(receiver), self.name,
                          exc_info=(type(result), result, result.__traceback__))


def _name_of(receiver):
    module = getattr(receiver, '__module__', None)
    name = getattr(receiver, '__qualname__', None) or repr(receiver)
    return '%s.%s' % (module, name) if module else name


#: Sent by the worker just before it calls a task's function.
#: Arguments: ``task`` (the :class:`~sisy.models.Task`) and ``run`` (the
#: :class:`~sisy.models.TaskRun`, now *running*). Sender: ``TaskRun``.
run_started = SisySignal('run_started')

#: Sent once a run's outcome is recorded, by the process that recorded it.
#: Arguments: ``task`` (the Task, or None if it had been deleted), ``run`` (the
#: TaskRun as recorded), ``outcome`` (``'ok'``, ``'error'``, ``'timeout'``,
#: ``'stopped'``, ``'lost'`` or ``'skipped'``), ``duration`` (seconds from the
#: run's start to its record; None for a run skipped or lost) and ``error`` (the
#: traceback or reason recorded with the run; ``''`` when it went well).
#: Sender: ``TaskRun``.
run_finished = SisySignal('run_finished')

#: Sent when Sisy disables a task: its function cannot be loaded (code
#: removed, an import error, the model row gone) or its schedule is invalid.
#: Arguments: ``task_id``, ``label`` and ``reason`` (the text stored in
#: ``disabled_reason``). Sender: ``Task``.
task_disabled = SisySignal('task_disabled')


def send_run_finished(task, run):
    """Announce `run`, whose outcome was just recorded (its fields say what it was)."""
    run_finished.send_safely(type(run), task=task, run=run, outcome=run.status,
                             duration=run.duration, error=run.error)


# -- Sisy's own wiring: sent by the models, received by modules above them (apps.ready
# connects them), so the models never import what builds on them. Not for users.

#: A task was saved with its first run due now (run_once, run_immediately). Argument: ``task``.
task_due_now = Signal()

#: A task was enabled again. Arguments: ``task`` (as saved) and ``now``.
task_reenabled = Signal()
