"""Fixtures for the real-process tests: a fresh database and layer prefix per test."""

import os
import uuid

import pytest

from tests.integration.cluster import (
    STACKS, Cluster, clear_layer, copy_sqlite, drop_pg_database, pg_admin)


@pytest.fixture(scope='session')
def migrated_template(tmp_path_factory):
    """Return a migrated database for a stack, made once per session, to copy from."""
    made = {}
    folder = tmp_path_factory.mktemp('templates')

    def template(stack):
        if stack not in made:
            if stack == 'sqlite-ipc':
                name = str(folder / 'template.sqlite3')
            else:
                name = 'sisy_it_template_%s' % uuid.uuid4().hex[:8]
                pg_admin('CREATE DATABASE "%s"' % name)
            made[stack] = name
            Cluster(stack, name, 'sisy-it-template', str(folder)).manage('migrate', '-v', '0')
        return made[stack]

    yield template
    for stack, name in made.items():
        if stack == 'postgresql-redis':
            drop_pg_database(name)


def _prefix(stack):
    token = 'sisy-it-%s' % uuid.uuid4().hex[:10]
    return token + ':' if stack == 'postgresql-redis' else token


@pytest.fixture
def empty_database(request, tmp_path):
    """(stack, name) of a new, empty database: no tables at all."""
    stack = request.param
    if stack == 'sqlite-ipc':
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
    if stack == 'sqlite-ipc':
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
        if stack == 'postgresql-redis':
            drop_pg_database(name)


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
