"""sisy_heartbeat's signal handling, at the moment a signal is most awkward."""

import os
import subprocess
import sys

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
