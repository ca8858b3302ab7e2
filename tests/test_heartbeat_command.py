"""sisy_heartbeat's signal handling, at the moments a signal is most awkward."""

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Sends SIGTERM while the main thread holds the stop event's internal lock, which
# is where Event.wait() spends a moment on every wake-up.
SCRIPT = '''
import os, signal, django
django.setup()
from django.core.management import call_command
from sisy.heartbeat import Heartbeat

def run(self, ticks=None):
    with self.stop._cond:
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100000))  # the handler runs here, inside the lock
    assert self.stop.wait(5), 'the stop request never arrived'
    return 0

Heartbeat.run = run
call_command('sisy_heartbeat', verbosity=0)
'''


def test_a_signal_while_the_stop_event_is_locked_does_not_deadlock():
    env = dict(os.environ, PYTHONPATH=ROOT, DJANGO_SETTINGS_MODULE='tests.settings')
    result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env, timeout=20,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert result.returncode == 0, result.stderr


# A layer that is down for good, a 60 s period and a first tick due at once: after a
# few failed retries the heartbeat is in a pause of several seconds when SIGTERM comes.
DOWN_SCRIPT = '''
import django
django.setup()
from channels import Channel
from django.core.management import call_command
from django.test import override_settings
from sisy import heartbeat

def send(self, content, immediately=False):
    raise ConnectionError('Connection refused')

Channel.send = send
heartbeat.next_tick = lambda now, frequency: now
heartbeat.FIRST_RETRY = 1
with override_settings(SISY_HEARTBEAT_FREQUENCY=60):
    call_command('sisy_heartbeat', verbosity=2)
'''


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def start_heartbeat(script, tmp_path):
    """Run `script` (a sisy_heartbeat with a doctored layer); return it and its log's path."""
    env = dict(os.environ, PYTHONPATH=ROOT, DJANGO_SETTINGS_MODULE='tests.settings')
    log_path = tmp_path / 'heartbeat.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, env=env, stderr=log)
    return process, log_path


def stops_promptly_on_sigterm(process, log_path):
    """SIGTERM ends the command with status 0 in a few seconds, saying it stopped."""
    assert process.poll() is None, log_path.read_text()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    # Well before any pause ends; a loaded machine may take a few seconds to exit.
    assert time.monotonic() - started < 4
    assert 'Stopped while channel sisy.heartbeat could not be reached' in log_path.read_text()


def test_a_signal_during_an_outage_stops_the_command_promptly(tmp_path):
    process, log_path = start_heartbeat(DOWN_SCRIPT, tmp_path)
    try:
        # Retries after pauses of 1, 2 and 4 s; the next pause is 8 s long.
        wait_for(lambda: log_path.read_text().count('not sent') >= 3 or process.poll() is not None,
                 60, 'three failed retries')
        assert log_path.read_text().count('Cannot send ticks') == 1
        stops_promptly_on_sigterm(process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# A layer that takes the tick and never answers (a frozen Redis), a tick due at once.
HUNG_SCRIPT = '''
import threading, django
django.setup()
from channels import Channel
from django.core.management import call_command
from django.test import override_settings
from sisy import heartbeat

def send(self, content, immediately=False):
    threading.Event().wait()

Channel.send = send
heartbeat.next_tick = lambda now, frequency: now
with override_settings(SISY_HEARTBEAT_FREQUENCY=1):
    call_command('sisy_heartbeat', verbosity=1)
'''


def test_a_signal_while_a_send_hangs_stops_the_command_promptly(tmp_path):
    process, log_path = start_heartbeat(HUNG_SCRIPT, tmp_path)
    try:
        wait_for(lambda: 'has not gone out' in log_path.read_text() or process.poll() is not None,
                 20, 'the warning of the hung send')
        stops_promptly_on_sigterm(process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
