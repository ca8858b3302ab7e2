"""Benchmark: resident memory of an idle heartbeat and an idle worker, on each stack.

Usage (from the repository root; the postgresql-redis stack needs PostgreSQL
on 127.0.0.1:5432 and Redis on 127.0.0.1:6379):

    .venv/bin/python extra/bench/memory.py                # 5 starts per stack
    .venv/bin/python extra/bench/memory.py --urls         # the site includes sisy.urls
    .venv/bin/python extra/bench/memory.py --site-venv    # as a deployed site installs Sisy

Per start, on a fresh copy of a migrated database: one ``runworker`` on Sisy's
channels (the other benchmarks' command line) and one ``sisy_heartbeat`` with
SISY_HEARTBEAT_FREQUENCY=1, nothing due. After --settle seconds of empty ticks
VmRSS and VmHWM of each are read from /proc/PID/status. Prints every start and
the median per stack and process; removes its databases, Redis keys and
shared memory at the end.

The figure depends on the Python environment as much as on Sisy: the
processes run under this script's interpreter, so run it with the Python of
the environment you want to measure, or give --site-venv. That makes a
throw-away virtualenv per stack holding only what a site on it installs
(``pip install .[redis,postgresql]`` or ``.[ipc]``, at the versions of
requirements/primary.txt) and starts the measured processes from it; the
development virtualenv also holds Sphinx, tox and the other stack's layer. It prints what in that environment
changes the figure (see docs/deployment.rst, "Memory"), and writes the
bytecode caches of the project's own modules first, as a deployed site has
them (with PYTHONDONTWRITEBYTECODE set, every start would compile them again).
"""

import argparse
import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchsite  # noqa: E402

# Imported by Django or Channels at start-up whenever installed, used or not.
OPTIONAL = ('jinja2', 'asgi_ipc', 'asgi_redis')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--starts', type=int, default=5, help='starts per stack')
    parser.add_argument('--settle', type=float, default=5,
                        help='seconds of empty ticks before the RSS is read')
    parser.add_argument('--stacks', default=','.join(benchsite.STACKS),
                        help='comma-separated, from %s' % ', '.join(benchsite.STACKS))
    parser.add_argument('--urls', action='store_true',
                        help="include sisy.urls in the site's URLconf (the system checks "
                             "of both processes then load it)")
    parser.add_argument('--site-venv', action='store_true',
                        help='start the measured processes from a throw-away virtualenv per '
                             'stack holding only what a site on that stack installs (pip '
                             'must reach its package index)')
    args = parser.parse_args()
    args.stacks = [name.strip() for name in args.stacks.split(',') if name.strip()]
    unknown = set(args.stacks) - set(benchsite.STACKS)
    if unknown:
        parser.error('unknown stacks: %s' % ', '.join(sorted(unknown)))
    return args


# Run by the measured interpreter: one line on what in its environment moves the figure.
# setuptools 60+ answers `import distutils` (Django 2.2 does it) with its own copy,
# which imports all of setuptools, unless SETUPTOOLS_USE_DISTUTILS=stdlib.
DESCRIBE = """
import importlib.util, os, sys
try:
    from importlib.metadata import version
    setuptools = version('setuptools')
except Exception:  # no setuptools, or no metadata for it (Python 3.6, 3.7)
    setuptools = None
shim = (setuptools is not None and int(setuptools.split('.')[0]) >= 60
        and os.environ.get('SETUPTOOLS_USE_DISTUTILS', 'local') == 'local')
installed = [name for name in %r if importlib.util.find_spec(name) is not None]
print('%%s; setuptools %%s, distutils from %%s; installed: %%s' %% (
    sys.executable, setuptools or 'absent', 'setuptools' if shim else 'the standard library',
    ', '.join(installed) or 'none of ' + ', '.join(%r)))
""" % (OPTIONAL, OPTIONAL)


def environment(python=sys.executable):
    """One line on what in `python`'s environment moves the figure."""
    return subprocess.run([python, '-c', DESCRIBE], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.strip()


EXTRAS = {'postgresql-redis': 'redis,postgresql', 'sqlite-ipc': 'ipc'}


def site_python(stack, folder):
    """The Python of a new virtualenv holding Sisy as a site on `stack` installs it."""
    venv = os.path.join(folder, 'venv-%s' % stack)
    subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
    python = os.path.join(venv, 'bin', 'python')
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
                    '-c', os.path.join(benchsite.ROOT, 'requirements', 'primary.txt'),
                    '%s[%s]' % (benchsite.ROOT, EXTRAS[stack])], check=True)
    return python


def write_bytecode():
    for folder in ('sisy', os.path.join('extra', 'bench'), os.path.join('extra', 'demo')):
        compileall.compile_dir(os.path.join(benchsite.ROOT, folder), quiet=2)


def one_start(stack, template, folder, settle, urls, python):
    """{'heartbeat': (rss, peak), 'worker': (rss, peak)} in KiB, for one fresh site."""
    site = benchsite.Site(stack, template, folder)
    site.python = python
    if urls:
        site.env['SISY_BENCH_URLCONF'] = 'bench_urls'
    try:
        worker = site.start_workers(1)[0]
        heartbeat = site.start_heartbeat()
        time.sleep(settle)
        troubles = site.troubles()
        if troubles:
            raise RuntimeError('; '.join('%s: %s' % trouble for trouble in troubles))
        return {'heartbeat': benchsite.rss_kib(heartbeat.pid),
                'worker': benchsite.rss_kib(worker.pid)}
    finally:
        site.cleanup()


def mib(kib):
    return '%.1f' % (kib / 1024)


def main():
    args = parse_args()
    write_bytecode()
    folder = tempfile.mkdtemp(prefix='sisy-bench-memory-')
    print('RSS of an idle sisy_heartbeat (1 s ticks) and an idle runworker, %d starts per '
          'stack, read after %g s%s; %s; %s' % (
              args.starts, args.settle, ', site includes sisy.urls' if args.urls else '',
              time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), benchsite.code_state()),
          flush=True)
    print(environment(), flush=True)
    print(benchsite.machine_state(), flush=True)
    medians = []
    try:
        for stack in args.stacks:
            python = site_python(stack, folder) if args.site_venv else sys.executable
            if args.site_venv:
                print('%s: %s' % (stack, environment(python)), flush=True)
            template = benchsite.Template(stack, folder)
            try:
                readings = []
                for number in range(args.starts):
                    reading = one_start(stack, template, folder, args.settle, args.urls, python)
                    readings.append(reading)
                    print('%s start %d: %s' % (stack, number + 1, ', '.join(
                        '%s %s MiB (peak %s)' % (name, mib(rss), mib(peak))
                        for name, (rss, peak) in sorted(reading.items()))), flush=True)
            finally:
                template.drop()
            for name in ('heartbeat', 'worker'):
                medians.append((stack, name,
                                statistics.median(reading[name][0] for reading in readings),
                                statistics.median(reading[name][1] for reading in readings)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print('\nmedian VmRSS (VmHWM) in MiB:')
    for stack, name, rss, peak in medians:
        print('  %-17s %-10s %6s (%s)' % (stack, name, mib(rss), mib(peak)))
    print('at the end: %s' % benchsite.machine_state())
    return 0


if __name__ == '__main__':
    sys.exit(main())
