"""The heartbeat loop: one tick per period, on wall-clock multiples of the period.

Each tick's time is computed from the epoch, not from the previous sleep, so
the loop never drifts; a late wake-up still sends the tick it woke up for.
"""

import logging
import math
import threading
import time

from channels import Channel

log = logging.getLogger('sisy.heartbeat')


def next_tick(now, frequency):
    """The first multiple of `frequency` seconds (since the epoch) after `now`."""
    return (math.floor(now / frequency) + 1) * frequency


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
            self.send(tick)
            sent += 1
        log.info('Heartbeat stopped after %d tick(s)', sent)
        return sent

    def send(self, tick):
        try:
            self.channel.send({'time': tick}, immediately=True)
        except self.channel.channel_layer.ChannelFull:
            if not self.full_warned:
                log.warning('Channel %s is full: are any workers running? Ticks are '
                            'dropped until they consume it.', self.channel.name)
            self.full_warned = True
            return
        self.full_warned = False
        log.debug('Tick %s sent', tick)
