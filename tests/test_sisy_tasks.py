"""The sisy_tasks command: what an operator sees from the shell."""

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sisy.models import Task, task_with_callable
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def listing(*args, **options):
    out = io.StringIO()
    call_command('sisy_tasks', *args, stdout=out, **options)
    return out.getvalue()


def make(label, schedule, func=tasks.record, **fields):
    task = task_with_callable(func, label=label, schedule=schedule, **fields)
    task.save()
    return Task.objects.get(pk=task.pk)


def test_lists_tasks_with_schedule_meaning_and_local_times():
    nightly = make('nightly-digest', '30 0 * * *')
    make('weekday-sync', '0,15,30,45 9-17 * * mon-fri', enabled=False)
    Task.objects.filter(label='weekday-sync').update(disabled_reason='Cannot load the function')
    output = listing()
    assert output.startswith('2 task(s), 1 enabled. Times are in Europe/London.\n')
    local = timezone.localtime(nightly.next_run)
    assert ('nightly-digest  [id %d, enabled]\n'
            '  function   tests.testapp.tasks.record\n'
            '  schedule   30 0 * * *  (at 00:30 every day)\n'
            '  next run   %s\n'
            '  last run   -\n' % (nightly.pk, local.strftime('%a %Y-%m-%d 00:30:00 %Z'))) in output
    assert 'weekday-sync  [id' in output and 'DISABLED]' in output
    assert '(every 15 minutes from 09:00 to 17:45 on Monday to Friday)' in output
    assert '  next run   none, disabled\n' in output
    assert '  disabled   Cannot load the function\n' in output


def test_filters_by_label_and_shows_recent_runs(worker, soon):
    make('flaky', '* * * * *', func=tasks.explode, iterations=5)
    make('other', '* * * * *')
    Task.objects.update(next_run=soon)
    worker.tick(soon)
    output = listing('FLA', runs=3)
    assert output.startswith('1 task(s), 1 enabled.')
    assert 'other' not in output
    assert '  runs left  4\n' in output
    assert ': error\n' in output
    assert '  last 1 run(s):\n' in output
    assert 'error' in output and 'RuntimeError: boom from a test task' in output


def test_shows_the_window_and_finished_tasks():
    start = timezone.now() + dt.timedelta(days=1)
    task = make('window', '0 * * * *', start_running=start, end_running=start + dt.timedelta(days=1))
    output = listing('window')
    assert '  window     from %s' % timezone.localtime(start).strftime('%a %Y-%m-%d') in output
    Task.objects.filter(pk=task.pk).update(next_run=None)
    assert 'none, finished' in listing('window')


def test_no_tasks():
    assert listing() == '0 task(s), 0 enabled. Times are in Europe/London.\n'


def test_says_which_filter_matched_nothing():
    make('nightly-digest', '30 0 * * *')
    make('weekday-sync', '0 9 * * mon-fri')
    assert listing('nomatch') == (
        '0 task(s), 0 enabled. Times are in Europe/London.\n'
        "No task label contains 'nomatch' (2 task(s) in all; run sisy_tasks without TEXT "
        'to list them).\n')
    output = listing('DIGEST', 'nomatch', 'other')
    assert output.startswith('1 task(s), 1 enabled. Times are in Europe/London.\n'
                             "No task label contains 'nomatch' or 'other' (2 task(s) in all;")
    assert 'nightly-digest  [id' in output
    assert 'No task label' not in listing('digest', 'SYNC')


def test_negative_runs_is_refused():
    with pytest.raises(CommandError, match='--runs must be 0 or more; got -1'):
        listing(runs=-1)
