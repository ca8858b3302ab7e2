from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from sisy import ledger
from sisy.describe import describe, local_time
from sisy.models import Task, TaskRun
from sisy.schedule import InvalidSchedule


class Command(BaseCommand):
    help = ('List Sisy tasks: schedule and what it means, next and last run in local time '
            '(TIME_ZONE), last outcome. Example: "manage.py sisy_tasks digest --runs 5".')

    def add_arguments(self, parser):
        parser.add_argument('labels', nargs='*', metavar='TEXT',
                            help='Only tasks whose label contains one of these (any case).')
        parser.add_argument('--runs', type=int, default=0, metavar='N',
                            help='Also show the last N runs of each task (default: 0).')

    def handle(self, *args, labels=(), runs=0, **options):
        if runs < 0:
            raise CommandError('--runs must be 0 or more; got %d.' % runs)
        tasks = Task.objects.order_by('label', 'pk')
        if labels:
            wanted = Q()
            for text in labels:
                wanted |= Q(label__icontains=text)
            tasks = tasks.filter(wanted)
        tasks = list(tasks)
        zone = timezone.get_default_timezone()
        enabled = sum(task.enabled for task in tasks)
        self.stdout.write('%d task(s), %d enabled. Times are in %s.'
                          % (len(tasks), enabled, timezone.get_default_timezone_name()))
        unmatched = [text for text in labels
                     if not any(text.lower() in task.label.lower() for task in tasks)]
        if unmatched:
            self.stdout.write('No task label contains %s (%d task(s) in all; run sisy_tasks '
                              'without TEXT to list them).'
                              % (' or '.join(repr(text) for text in unmatched),
                                 Task.objects.count()))
        for task in tasks:
            self.stdout.write('')
            for line in self.describe_task(task, zone, runs):
                self.stdout.write(line)

    def describe_task(self, task, zone, runs):
        """The lines that show one task."""
        try:
            function = task.function_path
        except (ValueError, KeyError):
            function = 'unreadable function info: %r' % task._func_info
        try:
            meaning = describe(task.schedule)
        except InvalidSchedule as error:
            meaning = 'invalid: %s' % error
        if not task.enabled:
            next_run = 'none, disabled'
        elif task.next_run is None:
            next_run = 'none, finished (the reaper deletes it)'
        else:
            next_run = local_time(task.next_run, zone)
        last_run = local_time(task.last_run, zone)
        if task.last_outcome:
            last_run += ': %s' % task.last_outcome
        if task.running:
            last_run += ' (running now)'
        lines = ['%s  [id %s, %s]' % (task.label, task.pk,
                                      'enabled' if task.enabled else 'DISABLED'),
                 '  function   %s' % function,
                 '  schedule   %s  (%s)' % (task.schedule, meaning),
                 '  next run   %s' % next_run,
                 '  last run   %s' % last_run]
        if task.iterations:
            lines.append('  runs left  %d' % task.iterations)
        if task.start_running or task.end_running:
            lines.append('  window     from %s until %s' % (
                local_time(task.start_running, zone), local_time(task.end_running, zone)))
        if task.disabled_reason:
            lines.append('  disabled   %s' % task.disabled_reason)
        if runs:
            lines.extend(self.describe_runs(task, zone, runs))
        return lines

    def describe_runs(self, task, zone, count):
        recent = list(TaskRun.objects.filter(task=task)[:count])
        if not recent:
            return ['  no runs recorded']
        lines = ['  last %d run(s):' % len(recent)]
        for run in recent:
            duration = '' if run.duration is None else '%.3f s' % run.duration
            error = run.error.strip().splitlines()[-1] if run.error.strip() else ''
            lines.append('    %s  %-7s %10s  %s' % (local_time(run.scheduled_for, zone),
                                                   run.status, duration, error))
        ledger_lines = ledger.entries(task, count)
        if ledger_lines:
            lines.append('  slots that did not start on time:')
            lines.extend('    %s' % text for _, text in ledger_lines)
        return [line.rstrip() for line in lines]
