"""Fixtures for the real-process tests: a fresh database and layer prefix per test.

`cluster` runs on the machine's shared PostgreSQL and Redis; `private_cluster`
runs on servers of the test run's own (`private_postgres`, `private_redis`),
which fault tests may stop and restart.
"""

import os
import uuid

import pytest

from tests.integration.cluster import (
    STACKS, Cluster, clear_layer, copy_sqlite, drop_pg_database, on_redis, on_sqlite, pg_admin)
from tests.integration.services import PrivatePostgres, PrivateRedis


@pytest.fixture(scope='session')
def migrated_template(tmp_path_factory):
    """Return a migrated database for a stack, made once per session, to copy from."""
    made = {}
    folder = tmp_path_factory.mktemp('templates')

    def template(stack):
        if stack not in made:
            if on_sqlite(stack):
                name = str(folder / ('template-%s.sqlite3' % stack))
            else:
                name = 'sisy_it_template_%s' % uuid.uuid4().hex[:8]
                pg_admin('CREATE DATABASE "%s"' % name)
            made[stack] = name
            Cluster(stack, name, 'sisy-it-template', str(folder)).manage('migrate', '-v', '0')
        return made[stack]

    yield template
    for stack, name in made.items():
        if not on_sqlite(stack):
            drop_pg_database(name)


def _prefix(stack):
    token = 'sisy-it-%s' % uuid.uuid4().hex[:10]
    return token + ':' if on_redis(stack) else token


@pytest.fixture
def empty_database(request, tmp_path):
    """(stack, name) of a new, empty database: no tables at all."""
    stack = request.param
    if on_sqlite(stack):
        yield stack, str(tmp_path / 'fresh.sqlite3')
        return
    name = 'sisy_it_fresh_%s' % uuid.uuid4().hex[:8]
    pg_admin('CREATE DATABASE "%s"' % name)
    yield stack, name
    drop_pg_database(name)


@pytest.fixture(params=STACKS)
def cluster(request, migrated_template, tmp_path):
    """A Sisy site of real processes on its own copy of a migrated database."""
    stack = request.param
    template = migrated_template(stack)
    if on_sqlite(stack):
        name = str(tmp_path / 'sisy.sqlite3')
        copy_sqlite(template, name)
    else:
        name = 'sisy_it_%s' % uuid.uuid4().hex[:10]
        pg_admin('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, template))
    prefix = _prefix(stack)
    site = Cluster(stack, name, prefix, str(tmp_path))
    try:
        yield site
    finally:
        site.stop_all()
        clear_layer(stack, prefix)
        if not on_sqlite(stack):
            drop_pg_database(name)


@pytest.fixture(scope='session')
def private_postgres_server():
    """The test run's own PostgreSQL cluster: initdb once, removed at the end."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def private_postgres(private_postgres_server):
    """The private PostgreSQL (a PrivatePostgres), running when the test starts.

    A test may stop and restart it; it is started again afterwards if need be.
    """
    private_postgres_server.start()
    yield private_postgres_server
    private_postgres_server.start()


@pytest.fixture
def private_redis():
    """A Redis of this test's own (a PrivateRedis) on a free port, removed afterwards."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope='session')
def private_template(private_postgres_server):
    """A migrated database on the private PostgreSQL, made once per session, to copy from."""
    private_postgres_server.start()
    name = private_postgres_server.create_database('sisy_it_template')
    Cluster('postgresql-redis', name, 'sisy-it-template', private_postgres_server.folder,
            pg_port=private_postgres_server.port).manage('migrate', '-v', '0')
    return name


@pytest.fixture(params=STACKS)
def private_cluster(request, migrated_template, tmp_path):
    """A Sisy site whose services belong to the test run, so a test may stop them.

    On postgresql-redis: a copy of a migrated database on `private_postgres` and
    the channel layer on `private_redis` (request those fixtures to restart them);
    on sqlite-redis, the layer on `private_redis`. SQLite and asgi_ipc need no
    server: the database file and the layer's shared memory (by prefix) are the
    test's own anyway.
    """
    stack = request.param
    prefix = _prefix(stack)
    ports = {}
    if on_redis(stack):
        ports['redis_port'] = request.getfixturevalue('private_redis').port
    if on_sqlite(stack):
        name = str(tmp_path / 'sisy.sqlite3')
        copy_sqlite(migrated_template(stack), name)
    else:
        postgres = request.getfixturevalue('private_postgres')
        name = postgres.create_database('sisy_it_%s' % uuid.uuid4().hex[:10],
                                        template=request.getfixturevalue('private_template'))
        ports['pg_port'] = postgres.port
    site = Cluster(stack, name, prefix, str(tmp_path), **ports)
    try:
        yield site
    finally:
        site.stop_all()
        if not on_redis(stack):
            clear_layer(stack, prefix)
        if not on_sqlite(stack):
            postgres.start()
            postgres.drop_database(name)


@pytest.fixture
def figures(request):
    """Write a measured figure to test-output/integration-figures.txt and the terminal."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = os.path.join(root, 'test-output')
    os.makedirs(folder, exist_ok=True)
    capture = request.config.pluginmanager.getplugin('capturemanager')

    def write(line):
        with open(os.path.join(folder, 'integration-figures.txt'), 'a') as out:
            out.write(line + '\n')
        with capture.global_and_fixture_disabled():
            print('\n  ' + line)

    return write
