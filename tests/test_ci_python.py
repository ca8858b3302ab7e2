"""Which Python `make` builds .venv with (.ci/python), on fake sets of interpreters.

Each fake interpreter is a script that answers the version question .ci/python
asks; the machine's own Pythons are kept out of PATH, pyenv's and uv's folders.
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, '.ci', 'python')


class Machine:
    """A HOME with pyenv's and uv's folders and a PATH holding only what a test puts there."""

    def __init__(self, folder):
        self.home = str(folder / 'home')
        self.path = str(folder / 'bin')
        os.makedirs(self.path)
        for tool in ('sort', 'tail'):
            os.symlink(shutil.which(tool), os.path.join(self.path, tool))

    def fake(self, path, version):
        """An interpreter at `path` that says it is `version` (None: fails, like a pyenv shim
        of a version that is not installed)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as script:
            script.write('#!/bin/sh\n' + ('echo %s\n' % version if version else 'exit 127\n'))
        os.chmod(path, 0o755)
        return path

    def pyenv(self, version):
        return self.fake(os.path.join(self.home, '.pyenv', 'versions', version, 'bin', 'python'),
                         version.rsplit('.', 1)[0])

    def on_path(self, name, version):
        return self.fake(os.path.join(self.path, name), version)

    def uv(self, version):
        return self.fake(os.path.join(self.home, '.local', 'share', 'uv', 'python',
                                      'cpython-%s-linux-x86_64-gnu' % version, 'bin', 'python3'),
                         version.rsplit('.', 1)[0])

    def run(self, *args):
        env = {'HOME': self.home, 'PATH': self.path}
        return subprocess.run(['/bin/bash', SCRIPT] + list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=30)


@pytest.fixture
def machine(tmp_path):
    return Machine(tmp_path)


def one_line(result):
    assert result.returncode == 1, result
    assert result.stdout == ''
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_python_39_is_preferred_for_every_stack(machine):
    machine.pyenv('3.11.7')
    python39 = machine.pyenv('3.9.18')
    machine.on_path('python3.10', '3.10')
    for stack in ('sqlite-ipc', 'sqlite-redis', 'postgresql-redis'):
        result = machine.run(stack)
        assert (result.returncode, result.stdout.strip()) == (0, python39), result


def test_python_310_before_311_when_there_is_no_39(machine):
    python310 = machine.uv('3.10.16')
    machine.on_path('python3.11', '3.11')
    assert machine.run().stdout.strip() == python310
    assert machine.run('postgresql-redis').stdout.strip() == python310


def test_only_311_runs_the_default_stack(machine):
    python311 = machine.on_path('python3.11', '3.11')
    machine.on_path('python3', '3.11')
    machine.pyenv('3.12.1')
    result = machine.run()
    assert (result.returncode, result.stdout.strip()) == (0, python311), result
    assert machine.run('sqlite-redis').stdout.strip() == python311


def test_only_311_says_why_postgresql_needs_39_or_310_and_how_to_get_one(machine):
    python311 = machine.on_path('python3.11', '3.11')
    line = one_line(machine.run('postgresql-redis'))
    assert line.startswith('PostgreSQL needs Python 3.9 or 3.10 (Django 2.2 needs psycopg2 < 2.9, '
                           'which does not import on 3.11; found 3.11 at %s)' % python311), line
    assert "'uv python install 3.10'" in line


def test_only_312_and_newer_says_why_and_how_not_a_traceback(machine):
    machine.pyenv('3.13.0')
    machine.pyenv('3.12.1')
    machine.on_path('python3', '3.12')
    machine.on_path('python3.9', None)  # a pyenv shim without its version
    line = one_line(machine.run())
    assert line.startswith('Sisy needs Python 3.9, 3.10 or 3.11 (Django 2.2 and Channels 1.x do '
                           'not run on 3.12 or newer'), line
    assert 'found 3.13 at ' in line and "'uv python install 3.11'" in line


def test_no_python_at_all(machine):
    line = one_line(machine.run())
    assert line.startswith('No Python found: Sisy needs Python 3.9, 3.10 or 3.11'), line


def test_check_refuses_a_venv_python_that_cannot_run_the_stack(machine):
    python311 = machine.on_path('python3.11', '3.11')
    assert machine.run('--check', python311, 'sqlite-ipc').returncode == 0
    line = one_line(machine.run('--check', python311, 'postgresql-redis'))
    assert line.startswith('PostgreSQL needs Python 3.9 or 3.10'), line


def make(target, tmp_path, **env):
    """Run the Makefile's `target` with its .venv in `tmp_path`; return (venv, result)."""
    venv = str(tmp_path / 'venv')
    # A make of its own, as a newcomer runs it: not a child of the make running these
    # tests (whose job server it would look for, and warn about, on stderr).
    outer = ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES')
    clean = {name: value for name, value in os.environ.items() if name not in outer}
    return venv, subprocess.run(
        ['make', '--no-print-directory', '-C', ROOT, 'VENV=%s' % venv, target],
        env=dict(clean, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=60)


@pytest.mark.skipif(shutil.which('make') is None, reason='make is not installed')
def test_make_demo_on_312_alone_stops_with_the_line(machine, tmp_path):
    python312 = machine.pyenv('3.12.1')
    venv, result = make('demo', tmp_path, SISY_PYTHON=python312)
    assert result.returncode != 0
    assert 'Sisy needs Python 3.9, 3.10 or 3.11' in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    assert not os.path.exists(venv)


@pytest.mark.skipif(shutil.which('make') is None, reason='make is not installed')
def test_postgresql_demo_on_a_311_venv_stops_with_the_line(machine, tmp_path):
    venv = tmp_path / 'venv'
    machine.fake(str(venv / 'bin' / 'python'), '3.11')
    (venv / '.installed').touch()  # newer than setup.py and requirements/: up to date
    _, result = make('demo', tmp_path, SISY_DEMO_STACK='postgresql-redis')
    assert result.returncode != 0
    assert result.stderr.startswith('PostgreSQL needs Python 3.9 or 3.10'), result.stderr
