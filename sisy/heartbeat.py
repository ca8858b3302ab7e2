"""The heartbeat loop: one tick per period, on wall-clock multiples of the period.

Each tick's time is computed from the epoch, not from the previous sleep, so
the loop never drifts; a late wake-up still sends the tick it woke up for.

If the channel layer cannot be reached (Redis restarting, a network blip), the
loop keeps trying with a growing pause, capped at one period, and logs one line
when the outage starts and one when it ends. Ticks that fell in the outage are
not sent late: the first tick sent afterwards is the one current at that moment.
"""

import logging
import math
import threading
import time

from channels import Channel

log = logging.getLogger('sisy.heartbeat')

# The first pause before trying a failed send again; it doubles up to one period.
FIRST_RETRY = 0.5


def next_tick(now, frequency):
    """The first multiple of `frequency` seconds (since the epoch) after `now`."""
    return (math.floor(now / frequency) + 1) * frequency


def current_tick(now, frequency):
    """The last multiple of `frequency` seconds (since the epoch) at or before `now`."""
    return math.floor(now / frequency) * frequency


class Heartbeat:
    """Send {'time': <epoch seconds>} to `channel_name` every `frequency` seconds."""

    def __init__(self, channel_name, frequency, clock=time.time, stop=None):
        if frequency <= 0:
            raise ValueError('Heartbeat frequency must be a positive number of seconds; '
                             'got %r.' % (frequency,))
        self.channel = Channel(channel_name)
        self.frequency = frequency
        self.clock = clock
        self.stop = stop or threading.Event()
        self.full_warned = False
        self.last_error = None

    def run(self, ticks=None):
        """Send ticks until stopped (or `ticks` have been sent); return how many were sent."""
        log.info('Heartbeat started: a tick every %s s on channel %s',
                 self.frequency, self.channel.name)
        sent = 0
        while ticks is None or sent < ticks:
            tick = next_tick(self.clock(), self.frequency)
            while not self.stop.is_set() and self.clock() < tick:
                self.stop.wait(tick - self.clock())
            if self.stop.is_set():
                break
            if self.send(tick) or self.ride_out_outage(tick):
                sent += 1
        log.info('Heartbeat stopped after %d tick(s)', sent)
        return sent

    def send(self, tick):
        """Send one tick; return False if the channel layer could not take it."""
        try:
            self.channel.send({'time': tick}, immediately=True)
        except self.channel.channel_layer.ChannelFull:
            if not self.full_warned:
                log.warning('Channel %s is full: are any workers running? Ticks are '
                            'dropped until they consume it.', self.channel.name)
            self.full_warned = True
            return True
        except Exception as error:  # whatever the layer's client raises when it is down
            self.last_error = error
            return False
        self.full_warned = False
        log.debug('Tick %s sent', tick)
        return True

    def ride_out_outage(self, failed_tick):
        """Try again, with a growing pause, until a tick goes through or the loop is stopped.

        Each attempt sends the tick current at that moment, so a recovery sends
        one up-to-date tick rather than the backlog. Return True once one is sent.
        """
        started = self.clock()
        log.warning('Cannot send ticks on channel %s (%s: %s); retrying every %s s '
                    'at most until the channel layer answers.', self.channel.name,
                    type(self.last_error).__name__, self.last_error, self.frequency)
        pause = min(FIRST_RETRY, self.frequency)
        while not self.stop.wait(pause):
            tick = current_tick(self.clock(), self.frequency)
            if self.send(tick):
                missed = round((tick - failed_tick) / self.frequency)
                log.info('Ticks on channel %s go through again after %.1f s; %d tick(s) '
                         'missed, sent tick %s.', self.channel.name, self.clock() - started,
                         missed, tick)
                return True
            log.debug('Tick %s not sent: %s', tick, self.last_error)
            pause = min(pause * 2, self.frequency)
        log.info('Stopped while channel %s could not be reached', self.channel.name)
        return False
