"""The README's "Using Sisy in your project" is a path that works, followed to the letter.

The test reads the section's code blocks and does what each says, in order, in
a temporary folder: it runs the console commands (startproject, startapp,
migrate, check), writes or extends the files the Python blocks name (settings,
routing, asgi, the app's tasks), runs the ``manage.py shell`` blocks, and starts
the Procfile's processes: daphne, the web worker, the scheduler worker, the task
worker and the heartbeat. Then the README's first task must run and log what the
README shows. On SQLite and asgi_ipc, with two overrides appended to the
settings: a layer prefix of the test's own and a 1 s heartbeat.

It runs twice: in this virtualenv, on the checkout; and as a newcomer installs
it, in a new virtualenv that the README's ``venv`` line makes with this Python,
where its ``pip install 'sisy[ipc]'`` installs the wheel built from the checkout
(and the rest from the package index), so a missing file or dependency shows.

Every block in the section must be one of the kinds handled here, so a new
snippet cannot slip into the README untested.
"""

import glob
import os
import re
import shlex
import sqlite3
import subprocess
import sysconfig
import sys
import textwrap
import urllib.request
import uuid

import pytest

from tests.integration.cluster import (
    BIN, DEMO, ROOT, TROUBLE, Process, clear_layer, free_port, wait_until)

pytestmark = pytest.mark.integration

README = os.path.join(ROOT, 'README.rst')
SECTION = 'Using Sisy in your project'
EXTRAS = {'ipc', 'redis', 'postgresql'}  # what the README must show how to install
# Python blocks start with a comment saying what to do with them.
ADD_AT_END = re.compile(r'^# (\S+): add at the end$')
NEW_FILE = re.compile(r'^# (\S+): a new file\b')
ALTERNATIVE = re.compile(r'^# (\S+), several machines: instead of the CHANNEL_LAYERS above$')
SHELL = re.compile(r'^# python manage\.py shell\b')


def readme_section():
    """The text of the README's section, up to the next section of the same level."""
    with open(README) as readme:
        text = readme.read()
    heading = '%s\n%s\n' % (SECTION, '-' * len(SECTION))
    body = text[text.index(heading) + len(heading):]
    following = re.search(r'^[^\n]+\n-{3,}\n', body, re.MULTILINE)
    return body[:following.start()] if following else body


def code_blocks(section):
    """(language, code) of each ``.. code-block::`` in `section`, in order."""
    blocks = []
    lines = section.splitlines()
    for number, line in enumerate(lines):
        found = re.match(r'^\.\. code-block:: (\S+)$', line)
        if not found:
            continue
        body = []
        for following in lines[number + 1:]:
            if following.strip() and not following.startswith('   '):
                break
            body.append(following)
        blocks.append((found.group(1), textwrap.dedent('\n'.join(body)).strip('\n') + '\n'))
    return blocks


def sample_output(section):
    """Regexes for the lines of the literal block that shows the worker's output."""
    found = re.search(r"the task worker's output shows::\n\n((?:   .*\n)+)", section)
    assert found, 'The section no longer shows what the worker prints.'
    return [re.escape(line.strip()).replace(r'\.\.\.', '.*')
            for line in found.group(1).splitlines()]


def procfile_entries(text):
    """{name: command} of a Procfile's lines, comments left out."""
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith('#'):
            name, command = line.split(':', 1)
            entries[name.strip()] = command.strip()
    return entries


class Newcomer:
    """Follows the README's steps in a folder of its own.

    With a `wheel`, the README's venv and ``pip install 'sisy[ipc]'`` lines are
    carried out (the wheel stands for PyPI's sisy); otherwise the steps run in
    this virtualenv, on the checkout.
    """

    def __init__(self, folder, prefix, wheel=None):
        self.folder = str(folder)
        self.cwd = self.folder
        self.prefix = prefix
        self.wheel = wheel
        self.processes = []
        self.extras = set()
        self.use_bin(BIN)

    def use_bin(self, folder):
        """Run python, django-admin and daphne from this virtualenv's bin folder."""
        self.bin = folder
        self.interpreter = os.path.join(folder, 'python')
        env = dict(os.environ, PYTHONUNBUFFERED='1', PATH=folder + os.pathsep + os.environ['PATH'])
        # A new project has no settings module in the environment: manage.py sets its own.
        for name in ('DJANGO_SETTINGS_MODULE', 'PYTHONPATH', 'VIRTUAL_ENV'):
            env.pop(name, None)
        self.env = env

    def path(self, relative):
        return os.path.join(self.cwd, relative)

    def console(self, code):
        """Run a console block's commands; pip lines other than the wheel's only check extras."""
        for line in code.splitlines():
            assert line.startswith('$ '), 'not a command: %r' % line
            command = line[2:].split('  #', 1)[0].strip()
            words = shlex.split(command)
            if re.match(r'^python3(\.\d+)? -m venv (\S+) && \. \2/bin/activate$', command):
                if self.wheel:
                    self.run([base_python(), '-m', 'venv', words[3]], timeout=300)
                    self.use_bin(self.path(os.path.join(words[3], 'bin')))
            elif words[0] == 'pip':
                self.extras |= check_install_command(command)
                if self.wheel and words[2] == 'sisy[ipc]':
                    self.run([self.interpreter, '-m', 'pip', 'install', '-q', self.wheel + '[ipc]'],
                             timeout=600)
            elif words[0] == 'cd':
                self.cwd = os.path.join(self.cwd, words[1])
            elif words[0] == 'django-admin':
                self.run([os.path.join(self.bin, 'django-admin')] + words[1:])
            elif words[:2] == ['python', 'manage.py']:
                self.run([self.interpreter] + words[1:])
            else:
                raise AssertionError('The README runs %r; teach this test what it means.'
                                     % command)

    def run(self, argv, timeout=120):
        result = subprocess.run(argv, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True,
                                timeout=timeout)
        assert result.returncode == 0, '%s failed:\n%s' % (' '.join(argv), result.stdout)
        return result.stdout

    def python(self, code):
        """Do what a Python block's first line says."""
        first = code.splitlines()[0]
        if ADD_AT_END.match(first):
            target = self.path(ADD_AT_END.match(first).group(1))
            assert os.path.exists(target), 'the README adds to %s, which is not there' % target
            with open(target, 'a') as out:
                out.write('\n' + code)
            if target.endswith('settings.py'):
                check_settings_snippet(code)
                with open(target, 'a') as out:  # the test's own overrides
                    out.write("\nCHANNEL_LAYERS['default']['CONFIG']['prefix'] = %r\n"
                              "SISY_HEARTBEAT_FREQUENCY = 1\n" % self.prefix)
        elif NEW_FILE.match(first):
            target = self.path(NEW_FILE.match(first).group(1))
            assert not os.path.exists(target), 'the README creates %s, which exists' % target
            with open(target, 'w') as out:
                out.write(code)
        elif ALTERNATIVE.match(first):
            namespace = {}
            exec(code, namespace)
            layer = namespace['CHANNEL_LAYERS']['default']
            assert layer['BACKEND'] == 'asgi_redis.RedisChannelLayer'
            assert layer['ROUTING'] == 'mysite.routing.channel_routing'
            assert layer['CONFIG']['prefix']
        elif SHELL.match(first):
            self.run([self.interpreter, 'manage.py', 'shell', '-c', code])
        else:
            raise AssertionError('A Python block starts with %r; this test does not know what '
                                 'to do with it.' % first)

    def start(self, name, command, port):
        """Start a Procfile command in the project folder, as honcho does (through a shell)."""
        env = dict(self.env, PORT=str(port))
        process = Process(name, ['bash', '-c', 'cd %s && exec %s' % (shlex.quote(self.cwd),
                                                                       command)],
                          env, self.folder)
        self.processes.append(process)
        return process

    def stop_all(self):
        for process in reversed(self.processes):
            process.stop()


def base_python():
    """This Python itself, not the virtualenv the tests run in (tox's, or .venv)."""
    return os.path.join(sysconfig.get_config_var('BINDIR'), 'python%d.%d' % sys.version_info[:2])


def check_install_command(command):
    """Return the extras a pip line names, checking setup.py has them."""
    from importlib import metadata
    extras = set(metadata.metadata('sisy').get_all('Provides-Extra'))
    named = set(re.findall(r'\[([a-z,]+)\]', command)[0].split(','))
    assert named <= extras, '%r asks for extras %s; setup.py has %s' % (command, named, extras)
    return named


def check_settings_snippet(code):
    namespace = {'INSTALLED_APPS': [], 'DATABASES': {'default': {}}}
    exec(code, namespace)
    layer = namespace['CHANNEL_LAYERS']['default']
    assert layer['BACKEND'] == 'asgi_ipc.IPCChannelLayer'
    assert layer['CONFIG']['prefix'], 'each site needs a prefix of its own'
    assert namespace['LOGGING']['loggers'].get('sisy', {}).get('level') == 'INFO', \
        "runworker shows Sisy's lines only with the 'sisy' logger at INFO"
    assert namespace['USE_TZ'] is True


@pytest.fixture
def newcomer(request, tmp_path):
    wheel = request.getfixturevalue(request.param) if request.param else None
    person = Newcomer(tmp_path / 'newcomer', 'sisy-it-readme-%s' % uuid.uuid4().hex[:10], wheel)
    os.mkdir(person.folder)
    try:
        yield person
    finally:
        person.stop_all()
        clear_layer('sqlite-ipc', person.prefix)
        assert not glob.glob('/dev/shm/*%s*' % person.prefix)


@pytest.fixture(scope='session')
def sisy_wheel(tmp_path_factory):
    """The wheel of the checkout, built as a release would be."""
    folder = str(tmp_path_factory.mktemp('wheel'))
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', folder,
                             ROOT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stdout
    wheels = glob.glob(os.path.join(folder, 'sisy-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.parametrize('newcomer', [None], ids=['checkout'], indirect=True)
def test_the_readme_takes_a_new_project_to_its_first_task_run(newcomer):
    follow_the_readme(newcomer)


@pytest.mark.wheel
@pytest.mark.parametrize('newcomer', ['sisy_wheel'], ids=['wheel'], indirect=True)
def test_the_readme_works_with_the_wheel_in_a_new_virtualenv(newcomer):
    follow_the_readme(newcomer)
    where = newcomer.run([newcomer.interpreter, '-c', 'import sisy; print(sisy.__file__)'])
    assert where.startswith(os.path.join(newcomer.folder, 'venv') + os.sep), where
    assert ROOT not in where


def follow_the_readme(newcomer):
    """Do what the README's section says, then check the first task ran as it shows."""
    section = readme_section()
    blocks = code_blocks(section)
    procfile = None
    for language, code in blocks:
        if language == 'console':
            newcomer.console(code)
        elif language == 'python':
            newcomer.python(code)
        elif language == 'text':
            assert procfile is None, 'one Procfile only'
            procfile = procfile_entries(code)
        else:
            raise AssertionError('A %s block; this test does not know what to do with it.'
                                 % language)
    assert newcomer.extras == EXTRAS, 'the README installs extras %s' % newcomer.extras
    installs = [code for language, code in blocks if 'pip install' in code][0]
    assert "$ pip install 'sisy[ipc]'" in installs  # from PyPI
    assert "$ pip install -e '/path/to/sisy[ipc]'" in installs  # from a checkout
    assert procfile, 'The section shows no Procfile.'

    # The same processes as the demo's Procfile, without its keep-running wrapper.
    with open(os.path.join(DEMO, 'Procfile')) as demo_procfile:
        demo = {name: command.replace('./keep-running ', '').replace('demo.asgi', 'mysite.asgi')
                for name, command in procfile_entries(demo_procfile.read()).items()}
    assert procfile == demo

    port = free_port()
    processes = {name: newcomer.start(name, command, port) for name, command in procfile.items()}
    for name, process in processes.items():
        if name != 'web' and name != 'heartbeat':
            wait_until(lambda: 'Listening on channels' in process.log() or not process.alive(),
                       60, message='%s to listen' % name)
    heartbeat = processes['heartbeat']
    wait_until(lambda: 'Heartbeat started' in heartbeat.log() or not heartbeat.alive(), 60,
               message='the heartbeat to start')

    # The one-off task ran on the task worker, which logged what the README shows.
    worker = processes['sisyworker']
    shown = sample_output(section)
    wait_until(lambda: all(re.search(line, worker.log()) for line in shown)
               or not worker.alive(), 30, message="the README's lines in the worker's log")
    for line in shown:
        assert re.search(line, worker.log()), 'no %r in:\n%s' % (line, worker.log())

    database = os.path.join(newcomer.cwd, 'db.sqlite3')
    connection = sqlite3.connect(database, timeout=30)
    try:
        runs = connection.execute('SELECT status FROM sisy_taskrun WHERE task_label = ?',
                                  ['myapp.tasks.say_hello']).fetchall()
        labels = {label for label, in connection.execute('SELECT label FROM sisy_task')}
    finally:
        connection.close()
    assert ('ok',) in runs
    assert {'hello every minute', 'nightly hello'} <= labels

    listing = newcomer.run([newcomer.interpreter, 'manage.py', 'sisy_tasks', 'hello'])
    assert 'hello every minute  [id' in listing and '(every minute)' in listing

    # daphne and the web worker serve the project's pages.
    wait_until(lambda: _status(port) == 200, 30, message='the admin login page through daphne')

    for process in processes.values():
        assert process.alive(), '%s stopped:\n%s' % (process.name, process.log())
        found = TROUBLE.search(process.log())
        assert not found, '%s logged %r:\n%s' % (process.name, found.group(0), process.log())


def _status(port):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/admin/login/' % port, timeout=10) as page:
            return page.status
    except OSError:
        return None
