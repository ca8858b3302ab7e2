"""Time every SQL statement and commit of a bench process (SISY_BENCH_SQL_LOG set).

bench_settings installs it when SISY_BENCH_SQL_LOG names a file prefix: each
process then writes SISY_BENCH_SQL_LOG.<pid> (JSON: {statement kind: [count,
seconds]}) when it exits, and handoff.py --sql adds them up per system. The kind
is the statement's first words, enough to tell Sisy's statements apart.
"""

import atexit
import collections
import json
import os
import re
import time

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

SPENT = collections.defaultdict(lambda: [0, 0.0])
WORDS = re.compile(r'[A-Za-z_"]+')


def kind(sql):
    """A short name for a statement: its first words, and the table it starts on."""
    words = WORDS.findall(sql[:120])
    return ' '.join(word.strip('"') for word in words[:5])


def timed(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        entry = SPENT[kind(sql)]
        entry[0] += 1
        entry[1] += time.perf_counter() - started


def on_connection(sender, connection, **kwargs):
    if timed not in connection.execute_wrappers:
        connection.execute_wrappers.append(timed)


def install():
    path = os.environ['SISY_BENCH_SQL_LOG']
    commit = BaseDatabaseWrapper._commit

    def timed_commit(self):
        started = time.perf_counter()
        try:
            return commit(self)
        finally:
            entry = SPENT['COMMIT']
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    BaseDatabaseWrapper._commit = timed_commit
    connection_created.connect(on_connection, dispatch_uid='sqltimer')

    @atexit.register
    def write():
        with open('%s.%d' % (path, os.getpid()), 'w') as out:
            json.dump(dict(SPENT), out)
