"""extra/demo/keep-running: what the demo's Procfile runs each process under."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.cluster import DEMO, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WRAPPER = os.path.join(DEMO, 'keep-running')

# Notes its pid when it starts (and whether SIGINT came to it ignored) and the
# signal that stops it, then exits 0.
CHILD = '''
import os, signal, sys, time
folder = sys.argv[1]
with open(os.path.join(folder, 'sigint'), 'a') as out:
    out.write('ignored\\n' if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else 'default\\n')
def stop(signum, frame):
    with open(os.path.join(folder, 'stopped'), 'a') as out:
        out.write('%d %d\\n' % (os.getpid(), signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(os.path.join(folder, 'started'), 'a') as out:
    out.write('%d\\n' % os.getpid())
while True:
    time.sleep(1)
'''


class Wrapped:
    """keep-running around a command, in a session of its own as honcho starts it."""

    def __init__(self, folder, argv, pause, ignoring=()):
        self.folder = str(folder)
        self.log_path = os.path.join(self.folder, 'keep-running.log')

        def ignore():  # as a background job of a script, or a parent ignoring them, leaves it
            for signum in ignoring:
                signal.signal(signum, signal.SIG_IGN)

        with open(self.log_path, 'w') as log:
            self.popen = subprocess.Popen(
                [WRAPPER] + argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=ignore,
                env=dict(os.environ, KEEP_RUNNING_PAUSE=str(pause)), start_new_session=True)

    def lines(self, name):
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            return []
        with open(path) as notes:
            return notes.read().split()

    def log(self):
        with open(self.log_path) as log:
            return log.read()

    def close(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


@pytest.fixture
def wrapped(tmp_path):
    made = []

    def start(argv=None, pause=0.2, ignoring=()):
        made.append(Wrapped(tmp_path, argv or [sys.executable, '-c', CHILD, str(tmp_path)],
                            pause, ignoring))
        return made[-1]

    yield start
    for wrapper in made:
        wrapper.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize('signum, to_group, ignoring', [
    (signal.SIGTERM, False, ()), (signal.SIGINT, True, ()),
    (signal.SIGINT, True, (signal.SIGINT,)), (signal.SIGTERM, False, (signal.SIGTERM,))],
    ids=['SIGTERM-to-wrapper', 'SIGINT-to-its-group', 'SIGINT-though-started-ignoring-it',
         'SIGTERM-though-started-ignoring-it'])
def test_a_killed_process_comes_back_and_a_stop_request_ends_both(wrapped, signum, to_group,
                                                                  ignoring):
    """Whatever the signal dispositions keep-running inherits (a background job of a
    script starts with SIGINT ignored), a stop request ends it and its command."""
    keeper = wrapped(ignoring=ignoring)
    first = int(wait_until(lambda: keeper.lines('started'), 10, message='the first start')[0])
    os.kill(first, signal.SIGKILL)
    started = wait_until(lambda: len(keeper.lines('started')) == 2 and keeper.lines('started'),
                         10, message='a restart')
    second = int(started[1])
    assert second != first and alive(second)
    assert "exited with status 137; starting it again" in keeper.log()

    # honcho signals the wrapper's whole process group; a terminal's Ctrl-C does too.
    if to_group:
        os.killpg(keeper.popen.pid, signum)
    else:
        keeper.popen.send_signal(signum)
    assert keeper.popen.wait(10) == 0, keeper.log()
    assert keeper.lines('stopped') == [str(second), str(int(signum))]  # once, not twice
    assert not alive(second)
    assert len(keeper.lines('started')) == 2  # not started again
    assert keeper.lines('sigint') == ['default', 'default']


def test_a_stop_request_during_the_pause_ends_it_at_once(wrapped):
    keeper = wrapped([sys.executable, '-c', 'raise SystemExit(3)'], pause=60)
    wait_until(lambda: 'exited with status 3' in keeper.log(), 10, message='the first exit')
    started = time.monotonic()
    keeper.popen.terminate()
    assert keeper.popen.wait(10) == 0
    assert time.monotonic() - started < 2
    assert keeper.log().count('exited with status 3') == 1
