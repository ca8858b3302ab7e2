"""Remove the asgi_ipc shared memory the demo's channel layer leaves behind.

asgi_ipc keeps its queues in two POSIX shared-memory segments (100 MiB of
messages, 20 MiB of groups) and two semaphores named after the layer's prefix
(/dev/shm/sisy-demo-* on Linux). They outlive the processes: without this,
every stopped demo leaves 120 MiB of memory behind. `make demo` runs this
command after the demo stops, and prepare_demo runs it before it starts.
"""

import os
import re

from django.conf import settings
from django.core.management.base import BaseCommand

IPC_BACKEND = 'asgi_ipc.IPCChannelLayer'
STORES = ('messages', 'groups')  # asgi_ipc's segment names: <prefix>-messages, <prefix>-groups
SHM = '/dev/shm'


class Command(BaseCommand):
    help = ("Remove the shared-memory segments and semaphores of the demo's asgi_ipc layer, "
            "unless a running process still uses them. Does nothing on other layers.")

    def handle(self, *args, **options):
        layer = settings.CHANNEL_LAYERS['default']
        if layer['BACKEND'] != IPC_BACKEND:
            return
        prefix = layer.get('CONFIG', {}).get('prefix', 'asgi')
        names = ['%s-%s' % (prefix, store) for store in STORES]
        users = processes_using(names)
        if users:
            self.stdout.write('Channel layer %r is in use by process(es) %s; left in place.'
                              % (prefix, ', '.join(map(str, sorted(users)))))
            return
        removed = [name for name in names if unlink(name)]
        if removed and options['verbosity'] > 0:
            self.stdout.write('Removed the shared memory of channel layer %r (%s).'
                              % (prefix, ', '.join(removed)))


def unlink(name):
    """Unlink segment and semaphore `name`; return whether either existed."""
    import posix_ipc
    existed = False
    for remove in (posix_ipc.unlink_shared_memory, posix_ipc.unlink_semaphore):
        try:
            remove('/' + name)
            existed = True
        except posix_ipc.ExistentialError:
            pass
    return existed


def processes_using(names):
    """Pids of the processes that have one of the named segments mapped (Linux /proc)."""
    if not os.path.isdir('/proc'):
        return set()
    wanted = re.compile(r' %s/(%s)( \(deleted\))?$'
                        % (re.escape(SHM), '|'.join(re.escape(name) for name in names)))
    users = set()
    for pid in filter(str.isdigit, os.listdir('/proc')):
        if int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/maps' % pid) as maps:
                if any(wanted.search(line.rstrip('\n')) for line in maps):
                    users.add(int(pid))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return users
