"""The heartbeat: aligned ticks without drift, a full channel, outages, the command and signals."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from channels import DEFAULT_CHANNEL_LAYER, channel_layers
from django.core.management import CommandError, call_command
from django.test import override_settings

from sisy.heartbeat import Heartbeat, current_tick, next_tick
from sisy.management.commands.sisy_heartbeat import Command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeTime:
    """A clock and stop event in one: waiting advances the clock instead of sleeping."""

    def __init__(self, start, oversleep=0.0):
        self.now = start
        self.oversleep = oversleep
        self.stopped = False

    def __call__(self):
        return self.now

    def wait(self, timeout):
        self.now += max(timeout, 0) + self.oversleep
        return self.stopped

    def is_set(self):
        return self.stopped


@pytest.fixture(autouse=True)
def heartbeat_log(caplog):
    caplog.set_level(logging.INFO, logger='sisy.heartbeat')


@pytest.fixture
def layer():
    wrapper = channel_layers[DEFAULT_CHANNEL_LAYER]
    wrapper.channel_layer.flush()
    return wrapper.channel_layer


def sent_ticks(layer):
    ticks = []
    while True:
        channel, content = layer.receive(['sisy.heartbeat'], block=False)
        if channel is None:
            return ticks
        ticks.append(content['time'])


class FlakyChannel:
    """The heartbeat's real channel, except that its first `failures` sends raise."""

    def __init__(self, channel, clock, failures, error=ConnectionError('Connection refused')):
        self.channel, self.clock, self.failures, self.error = channel, clock, failures, error
        self.name, self.channel_layer = channel.name, channel.channel_layer
        self.attempts = []

    def send(self, content, immediately=False):
        self.attempts.append(self.clock())
        if len(self.attempts) <= self.failures:
            raise self.error
        self.channel.send(content, immediately=immediately)


def flaky_heartbeat(frequency, failures, start=1000000.0, **kwargs):
    clock = FakeTime(start=start)
    beat = Heartbeat('sisy.heartbeat', frequency, clock=clock, stop=clock)
    beat.channel = FlakyChannel(beat.channel, clock, failures, **kwargs)
    return beat, clock


def messages(caplog, text):
    """The log records of the heartbeat that contain `text`."""
    return [r for r in caplog.records if text in r.getMessage()]


def test_next_tick_is_the_next_multiple():
    assert next_tick(119.5, 60) == 120
    assert next_tick(120, 60) == 180
    assert next_tick(7.2, 5) == 10


def test_current_tick_is_the_last_multiple():
    assert current_tick(119.5, 60) == 60
    assert current_tick(120, 60) == 120


def test_ticks_are_aligned_and_do_not_drift_over_a_day(layer):
    clock = FakeTime(start=1000000.3, oversleep=0.7)  # every wake-up is 0.7 s late
    beat = Heartbeat('sisy.heartbeat', 60, clock=clock, stop=clock)
    ticks = []
    for _ in range(144):  # a day of minutes, read out as it goes (capacity is 10)
        beat.run(ticks=10)
        ticks.extend(sent_ticks(layer))
    assert len(ticks) == 1440
    assert ticks[0] == 1000020
    assert all(later - earlier == 60 for earlier, later in zip(ticks, ticks[1:]))
    assert all(tick % 60 == 0 for tick in ticks)


def test_a_full_channel_drops_ticks_with_one_warning(layer, caplog):
    clock = FakeTime(start=0)
    beat = Heartbeat('sisy.heartbeat', 5, clock=clock, stop=clock)
    assert beat.run(ticks=15) == 15
    assert len(sent_ticks(layer)) == 10
    warnings = [r for r in caplog.records if 'is full' in r.getMessage()]
    assert len(warnings) == 1 and 'workers' in warnings[0].getMessage()


def test_an_outage_is_ridden_out_with_one_warning_and_ticks_resume_on_time(layer, caplog):
    # 5 s period; the layer refuses 12 sends: an outage of about 30 s.
    beat, clock = flaky_heartbeat(5, failures=12)
    assert beat.run(ticks=3) == 3
    ticks = sent_ticks(layer)
    outage = messages(caplog, 'Cannot send ticks')
    assert len(outage) == 1 and outage[0].levelname == 'WARNING'
    assert 'ConnectionError' in outage[0].getMessage()
    back = messages(caplog, 'go through again')
    assert len(back) == 1
    # The first tick after the outage is the current one, not the backlog ...
    first_failed = 1000005
    assert ticks[0] == current_tick(beat.channel.attempts[12], 5) > first_failed
    missed = (ticks[0] - first_failed) // 5
    assert '%d tick(s) missed' % missed in back[0].getMessage()
    # ... and ticks go on from there on the period's multiples.
    assert ticks[1:] == [ticks[0] + 5, ticks[0] + 10]
    assert all(tick % 5 == 0 for tick in ticks)


def test_retries_back_off_up_to_one_period(layer):
    beat, clock = flaky_heartbeat(5, failures=8)
    beat.run(ticks=1)
    pauses = [later - earlier for earlier, later in
              zip(beat.channel.attempts, beat.channel.attempts[1:])]
    assert pauses == [0.5, 1, 2, 4, 5, 5, 5, 5]


def test_a_short_outage_sends_the_same_tick_late(layer, caplog):
    beat, clock = flaky_heartbeat(60, failures=2, start=1000000.0)
    assert beat.run(ticks=1) == 1
    assert sent_ticks(layer) == [1000020]  # 1.5 s late, still the current tick
    assert '0 tick(s) missed' in messages(caplog, 'go through again')[0].getMessage()


def test_each_outage_is_logged_once(layer, caplog):
    beat, clock = flaky_heartbeat(1, failures=3)
    beat.run(ticks=2)
    beat.channel.failures += 5  # a second outage
    beat.channel.attempts = []
    beat.run(ticks=2)
    assert len(messages(caplog, 'Cannot send ticks')) == 2
    assert len(messages(caplog, 'go through again')) == 2
    assert len(sent_ticks(layer)) == 4


def test_stopping_during_an_outage_ends_the_loop(layer, caplog):
    beat, clock = flaky_heartbeat(5, failures=10 ** 6)
    original_wait = clock.wait

    def wait(timeout):
        clock.stopped = clock.now > 1000100  # asked to stop 100 s into the outage
        return original_wait(timeout)

    clock.wait = wait
    assert beat.run() == 0
    assert sent_ticks(layer) == []
    assert messages(caplog, 'Stopped while channel')


def test_a_stopped_heartbeat_sends_nothing(layer):
    clock = FakeTime(start=0)
    clock.stopped = True
    assert Heartbeat('sisy.heartbeat', 5, clock=clock, stop=clock).run() == 0
    assert sent_ticks(layer) == []


class HangingChannel:
    """The heartbeat's real channel, except that its first send hangs until `answer()`.

    The hang lasts `stall` seconds of the fake clock: a frozen Redis that answers later.
    """

    def __init__(self, channel, clock, stall):
        self.channel, self.clock, self.stall = channel, clock, stall
        self.name, self.channel_layer = channel.name, channel.channel_layer
        self.hanging, self.answered = threading.Event(), threading.Event()
        self.sends = 0

    def send(self, content, immediately=False):
        self.sends += 1
        if self.sends == 1:
            self.hanging.set()
            assert self.answered.wait(10), 'the test never let the layer answer'
            self.clock.now += self.stall
        self.channel.send(content, immediately=immediately)

    def answer(self):
        self.answered.set()


def hanging_heartbeat(frequency, stall, start=1000000.0):
    clock = FakeTime(start=start)
    beat = Heartbeat('sisy.heartbeat', frequency, clock=clock, stop=clock)
    beat.channel = HangingChannel(beat.channel, clock, stall)
    beat.stall_warning = 0.5  # real seconds, to keep the test short
    return beat, clock


def in_thread(function, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    return thread, result


def wait_for(predicate, timeout=10, what='condition'):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.01)


def test_a_send_that_hangs_is_reported_and_the_current_tick_follows_it(layer, caplog):
    beat, clock = hanging_heartbeat(5, stall=31)
    thread, result = in_thread(beat.run, 3)
    wait_for(lambda: messages(caplog, 'has not gone out'), what='the warning of the hang')
    warning = messages(caplog, 'has not gone out')[0]
    assert warning.levelname == 'WARNING' and warning.getMessage().startswith(
        'Tick 1000005 has not gone out on channel sisy.heartbeat after 0.5 s: the channel '
        'layer takes the connection but does not answer')
    assert sent_ticks(layer) == [] and thread.is_alive()
    beat.channel.answer()
    thread.join(10)
    assert result == [3]
    # The tick that hung goes out late (workers ignore it as stale); the current
    # tick follows at once, then ticks go on on the period's multiples.
    assert sent_ticks(layer) == [1000005, 1000035, 1000040]
    assert len(messages(caplog, 'has not gone out')) == 1
    [back] = messages(caplog, 'answers again')
    assert back.getMessage().startswith('The channel layer answers again: tick 1000005 went out')


def test_a_send_that_hangs_for_less_than_a_period_sends_no_extra_tick(layer, caplog):
    beat, clock = hanging_heartbeat(60, stall=3)
    thread, result = in_thread(beat.run, 2)
    wait_for(lambda: messages(caplog, 'has not gone out'), what='the warning of the hang')
    beat.channel.answer()
    thread.join(10)
    assert result == [2]
    assert sent_ticks(layer) == [1000020, 1000080]


def test_stopping_while_a_send_hangs_ends_the_loop(layer, caplog):
    beat, clock = hanging_heartbeat(5, stall=0)
    thread, result = in_thread(beat.run)
    wait_for(lambda: messages(caplog, 'has not gone out'), what='the warning of the hang')
    clock.stopped = True
    thread.join(10)
    assert result == [0]
    assert len(messages(caplog, 'Stopped while channel sisy.heartbeat could not be reached')) == 1
    beat.channel.answer()


@override_settings(SISY_HEARTBEAT_FREQUENCY=0.2, SISY_HEARTBEAT_CHANNEL='custom.beat')
def test_command_uses_the_settings(layer):
    call_command('sisy_heartbeat', ticks=2, verbosity=0)
    channel, content = layer.receive(['custom.beat'], block=False)
    assert channel == 'custom.beat'
    assert abs(content['time'] / 0.2 - round(content['time'] / 0.2)) < 1e-6
    assert abs(content['time'] - time.time()) < 1


@pytest.mark.parametrize('bad', [0, -5, 'often'])
def test_command_rejects_a_bad_frequency(bad):
    with override_settings(SISY_HEARTBEAT_FREQUENCY=bad):
        with pytest.raises(CommandError, match='SISY_HEARTBEAT_FREQUENCY=%r' % (bad,)):
            call_command('sisy_heartbeat', ticks=1, verbosity=0)


def test_help_names_the_settings():
    text = Command().create_parser('manage.py', 'sisy_heartbeat').format_help()
    assert 'SISY_HEARTBEAT_CHANNEL' in text and 'SISY_HEARTBEAT_FREQUENCY' in text


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_command_promptly_and_cleanly(signum):
    env = dict(os.environ, PYTHONPATH=ROOT, DJANGO_SETTINGS_MODULE='tests.settings')
    process = subprocess.Popen([sys.executable, '-m', 'django', 'sisy_heartbeat'],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first_line = process.stderr.readline()  # blocks until the loop has started
        assert 'Heartbeat started' in first_line
        started = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
        # Not at the next tick (up to the 60 s period away); a loaded machine may take
        # a few seconds to exit.
        assert time.monotonic() - started < 10
        assert 'stopping' in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
