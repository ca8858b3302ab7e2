import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from sisy.conf import setting
from sisy.heartbeat import Heartbeat


class Command(BaseCommand):
    help = ('Send Sisy heartbeat ticks on SISY_HEARTBEAT_CHANNEL (default "sisy.heartbeat") '
            'every SISY_HEARTBEAT_FREQUENCY seconds (default 60), aligned to the clock. '
            'Runs in the foreground (for supervisor or honcho) and stops cleanly on '
            'SIGTERM or SIGINT.')

    def add_arguments(self, parser):
        parser.add_argument('--ticks', type=int, default=None,
                            help='Stop after sending this many ticks (default: run until stopped).')

    def handle(self, *args, ticks=None, verbosity=1, **options):
        _log_to_console(verbosity)
        frequency = setting('SISY_HEARTBEAT_FREQUENCY')
        try:
            heartbeat = Heartbeat(setting('SISY_HEARTBEAT_CHANNEL'), float(frequency))
        except (TypeError, ValueError) as error:
            raise CommandError('SISY_HEARTBEAT_FREQUENCY=%r is not usable: %s' % (frequency, error))

        def request_stop(name):
            logging.getLogger('sisy.heartbeat').info('Got %s, stopping', name)
            heartbeat.stop.set()

        def stop(signum, frame):
            # Not in the handler itself: the signal can land while the main thread
            # holds the stop event's lock (or the log stream's), and taking it again
            # here would deadlock the command.
            threading.Thread(target=request_stop, args=(signal.Signals(signum).name,),
                             daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        heartbeat.run(ticks=ticks)


def _log_to_console(verbosity):
    """Show Sisy's log on stderr unless the project's LOGGING already handles it."""
    logger = logging.getLogger('sisy')
    if logger.handlers or verbosity == 0:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
