"""The demo leaves no asgi_ipc shared memory behind, and never pulls it from under a live site."""

import glob
import os

import pytest

from tests.integration.cluster import wait_until

pytestmark = pytest.mark.integration


def segments(prefix):
    return sorted(os.path.basename(path) for path in
                  glob.glob('/dev/shm/%s-*' % prefix) + glob.glob('/dev/shm/sem.%s-*' % prefix))


@pytest.mark.parametrize('cluster', ['sqlite-ipc'], indirect=True)
def test_clear_demo_layer_removes_the_segments_once_no_process_uses_them(cluster):
    prefix = cluster.prefix
    expected = sorted(['%s-groups' % prefix, '%s-messages' % prefix,
                       'sem.%s-groups' % prefix, 'sem.%s-messages' % prefix])
    heartbeat = cluster.start_heartbeat()
    wait_until(lambda: segments(prefix) == expected, 30, message='the layer in /dev/shm')

    output = cluster.manage('clear_demo_layer')
    assert output == "Channel layer %r is in use by process(es) %d; left in place.\n" % (
        prefix, heartbeat.popen.pid)
    assert segments(prefix) == expected

    heartbeat.stop()
    output = cluster.manage('clear_demo_layer')
    assert output == "Removed the shared memory of channel layer %r (%s-messages, %s-groups).\n" \
        % (prefix, prefix, prefix)
    assert segments(prefix) == []
    assert cluster.manage('clear_demo_layer') == ''  # nothing left to do


@pytest.mark.parametrize('cluster', ['sqlite-ipc'], indirect=True)
def test_prepare_demo_clears_what_a_stopped_demo_left(cluster):
    cluster.start_heartbeat().stop()
    assert segments(cluster.prefix)
    cluster.manage('prepare_demo', '--verbosity', '0')
    assert segments(cluster.prefix) == []
