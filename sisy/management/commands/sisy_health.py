from django.core.management.base import BaseCommand, CommandError
from django.db import Error
from django.utils import timezone

from sisy import health

PROBLEM_STATUS = 2  # Nagios' CRITICAL; 1 is left to Django for bad options


class Command(BaseCommand):
    help = ('Check that Sisy\'s scheduler is healthy: exit 0, or exit 2 with one line per '
            'problem on stderr. Example: "manage.py sisy_health --max-wait 300 --failures 5".')
    requires_system_checks = False  # a probe should be quick; it reports what it finds

    def add_arguments(self, parser):
        parser.add_argument(
            '--only', action='append', choices=health.CHECKS, metavar='CHECK',
            help='Run only this check; repeat for several. One of: %s (default: all).'
                 % ', '.join(health.CHECKS))
        parser.add_argument(
            '--tick-periods', type=float, default=health.TICK_PERIODS, metavar='N',
            help='A problem when no tick was processed for N heartbeat periods '
                 '(default: %d).' % health.TICK_PERIODS)
        parser.add_argument(
            '--max-wait', type=float, default=None, metavar='SECONDS',
            help='A problem when a run waits longer than this for a worker (default: two '
                 'heartbeat periods, at least 60).')
        parser.add_argument(
            '--failures', type=int, default=health.FAILURES, metavar='N',
            help='A problem when a task failed N times in a row (default: %d).'
                 % health.FAILURES)

    def handle(self, *args, only=None, tick_periods=health.TICK_PERIODS, max_wait=None,
               failures=health.FAILURES, **options):
        if not tick_periods > 0:
            raise CommandError('--tick-periods must be more than 0; got %g.' % tick_periods)
        if max_wait is not None and not max_wait >= 0:
            raise CommandError('--max-wait must be 0 or more seconds; got %g.' % max_wait)
        if failures < 1:
            raise CommandError('--failures must be 1 or more; got %d.' % failures)
        now = timezone.now()
        try:
            problems = health.problems(now, checks=only or health.CHECKS,
                                       tick_periods=tick_periods, max_wait=max_wait,
                                       failures=failures)
            summary = None if problems else health.summary(now)
        except Error as error:  # InterfaceError too: a connection closed under it
            problems = ["cannot read Sisy's tables: %s"
                        % (str(error).strip().splitlines() or [type(error).__name__])[0]]
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise SystemExit(PROBLEM_STATUS)
        self.stdout.write('Sisy is healthy: %s.' % summary)
