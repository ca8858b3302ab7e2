"""The heartbeat loop: one tick per period, on wall-clock multiples of the period.

Each tick's time is computed from the epoch, not from the previous sleep, so
the loop never drifts; a late wake-up still sends the tick it woke up for.

If the channel layer cannot be reached (Redis restarting, a network blip), the
loop keeps trying with a growing pause, capped at one period, and logs one line
when the outage starts and one when it ends. Ticks that fell in the outage are
not sent late: the first tick sent afterwards is the one current at that moment.

A layer can also take the connection and never answer (a frozen Redis): its
client then waits for ever. So each send runs in a thread of its own, and the
loop says so when one has not returned after STALL_WARNING seconds (or one
period, if shorter), and again when it does; then it sends the current tick.
"""

import logging
import math
import threading
import time

from channels import Channel

log = logging.getLogger('sisy.heartbeat')

# The first pause before trying a failed send again; it doubles up to one period.
FIRST_RETRY = 0.5
# Seconds after which a send that has not returned is reported (one period if shorter).
STALL_WARNING = 5.0
# How often a loop waiting for a hung send looks for a stop request.
STALL_POLL = 0.1


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
        self.stall_warning = min(frequency, STALL_WARNING)
        self.full_warned = False
        self.last_error = None
        self.last_sent = None

    def run(self, ticks=None):
        """Send ticks until stopped (or `ticks` have been sent); return how many were sent."""
        log.info('Heartbeat started: a tick every %s s on channel %s',
                 self.frequency, self.channel.name)
        sent, tick = 0, None
        while ticks is None or sent < ticks:
            if tick is None:
                tick = next_tick(self.clock(), self.frequency)
                while not self.stop.is_set() and self.clock() < tick:
                    self.stop.wait(tick - self.clock())
            if self.stop.is_set():
                break
            went = self.send(tick)
            if went is None or not (went or self.ride_out_outage(tick)):
                break  # stopped
            sent += 1
            # A send that outlasted its period (a layer that hung) is followed at
            # once by the current tick; otherwise wait for the next one.
            tick = current_tick(self.clock(), self.frequency)
            if tick <= self.last_sent:
                tick = None
        log.info('Heartbeat stopped after %d tick(s)', sent)
        return sent

    def send(self, tick):
        """Send one tick; return False if the channel layer could not take it.

        The send runs in a thread, so a layer that never answers is reported
        (and a stop request heard) while it waits. Returns None if the loop was
        stopped before the send returned.
        """
        done, outcome = threading.Event(), []

        def attempt():
            outcome.append(self._send_now(tick))
            done.set()

        threading.Thread(target=attempt, name='sisy-heartbeat-send', daemon=True).start()
        if done.wait(self.stall_warning):
            return outcome[0]
        waiting = time.monotonic()
        log.warning('Tick %s has not gone out on channel %s after %g s: the channel layer '
                    'takes the connection but does not answer; waiting for it.',
                    tick, self.channel.name, self.stall_warning)
        while not done.wait(STALL_POLL):
            if self.stop.is_set():
                log.info('Stopped while channel %s could not be reached', self.channel.name)
                return None
        if outcome[0]:
            log.info('The channel layer answers again: tick %s went out after %.1f s.',
                     tick, self.stall_warning + time.monotonic() - waiting)
        return outcome[0]

    def _send_now(self, tick):
        """Send one tick from this thread; return False if the channel layer could not take it."""
        try:
            self.channel.send({'time': tick}, immediately=True)
        except self.channel.channel_layer.ChannelFull:
            if not self.full_warned:
                log.warning('Channel %s is full: are any workers running? Ticks are '
                            'dropped until they consume it.', self.channel.name)
            self.full_warned = True
            self.last_sent = tick
            return True
        except Exception as error:  # whatever the layer's client raises when it is down
            self.last_error = error
            return False
        self.full_warned = False
        self.last_sent = tick
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
            went = self.send(tick)
            if went is None:
                return False  # stopped while the send hung
            if went:
                missed = round((tick - failed_tick) / self.frequency)
                log.info('Ticks on channel %s go through again after %.1f s; %d tick(s) '
                         'missed, sent tick %s.', self.channel.name, self.clock() - started,
                         missed, tick)
                return True
            log.debug('Tick %s not sent: %s', tick, self.last_error)
            pause = min(pause * 2, self.frequency)
        log.info('Stopped while channel %s could not be reached', self.channel.name)
        return False
