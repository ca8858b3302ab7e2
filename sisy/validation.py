"""Checks on a task's values, made before anything reaches the database.

The one place each field is checked: task_with_callable, model validation (the
admin's form) and Task.save() all come here, so each refuses the same values
with the same words, naming the field, the value and what is allowed.
"""

import datetime as dt
import json
import math
import numbers
import re
import sys

from django.core.exceptions import ValidationError
from django.utils import timezone

from sisy.conf import setting
from sisy.schedule import InvalidSchedule, Schedule

#: The largest ``iterations``: PostgreSQL's (and MySQL's) integer column holds no more.
MAX_ITERATIONS = 2 ** 31 - 1
#: The largest ``retries``: the last attempt's number, ``retries + 1``, is stored in an
#: integer column too.
MAX_RETRIES = MAX_ITERATIONS - 1
#: The longest ``timeout`` and ``retry_delay``, in seconds (365 days). Sisy adds them
#: to the current time; a year ahead is always a valid datetime, and anything longer
#: is more likely a slip (milliseconds given as seconds) than a plan.
MAX_SECONDS = 365 * 24 * 3600
# Priorities as Django's tasks framework has them: higher first among runs waiting.
MIN_PRIORITY, MAX_PRIORITY = -100, 100
DEFAULT_QUEUE = 'default'
# A queue's name is part of a channel name (sisy.doorbells.channel_for), so it is
# limited to the characters Channels allows there.
QUEUE_NAME = re.compile(r'^[A-Za-z0-9_-]{1,50}$')


def validate_schedule_field(value):
    """Model-field validator: a bad cron expression becomes a ValidationError."""
    try:
        Schedule(value)
    except InvalidSchedule as error:
        raise ValidationError(str(error), code='invalid_schedule')


def validate_task(task, error_class=ValueError):
    """Check a task's public fields and userdata before anything reaches the database.

    Raises `error_class`: ValidationError keyed by field, or (ValueError) one
    message naming each bad value, what is allowed and how to fix it.
    """
    problems = task_problems(task)
    if problems:
        if error_class is ValidationError:
            raise ValidationError(problems)
        raise error_class(' '.join(problems.values()))


def task_problems(task):
    """A dict of field name -> what is wrong with its value; empty when all is well.

    The one place the fields are checked: task_with_callable, full_clean (the
    admin form) and save() all come here, so each refuses the same values with
    the same words. Numbers have upper bounds too (MAX_ITERATIONS, MAX_RETRIES,
    MAX_SECONDS), so nothing accepted can overflow a column or a datetime later.
    """
    problems = {}
    for name in ('label', 'schedule'):
        problems[name] = _too_long(task, name)
    for name in ('start_running', 'end_running'):
        problems[name] = _aware_problem(getattr(task, name), name)
    problems['end_running'] = problems['end_running'] or _end_problem(task)
    problems['iterations'] = count_problem(
        task.iterations, 'iterations', '0 (run forever)', MAX_ITERATIONS,
        'the largest whole number the database stores')
    problems['retries'] = count_problem(
        task.retries, 'retries', '0 (no retries)', MAX_RETRIES,
        "the last attempt's number, retries + 1, must fit the database's whole numbers")
    problems['timeout'] = seconds_problem(task.timeout, 'timeout', positive=True)
    problems['retry_delay'] = seconds_problem(task.retry_delay, 'retry_delay', positive=False)
    problems['priority'] = priority_problem(task.priority)
    problems['queue_name'] = queue_problem(task.queue_name)
    if task._userdata is not None:
        try:
            encode_userdata(task._userdata)
        except ValueError as error:
            problems['userdata'] = str(error)
    return {name: message for name, message in problems.items() if message}


LENGTH_HINTS = {
    'label': 'Shorten it; the function is stored separately, so the label is only a name.',
    'schedule': "Shorten it with ranges and steps, e.g. '0-29' or '*/2' instead of listing "
                "every value ('0,1,2,...').",
}


def _too_long(task, name):
    value, limit = getattr(task, name), task._meta.get_field(name).max_length
    if isinstance(value, str) and len(value) > limit:
        shown = value if len(value) <= 40 else value[:40] + '...'
        return ('%s %r is %d characters long; at most %d fit. %s'
                % (name, shown, len(value), limit, LENGTH_HINTS[name]))
    return None


def _aware_problem(value, name):
    if value is not None and (not isinstance(value, dt.datetime) or timezone.is_naive(value)):
        return ('%s must be an aware datetime (or None); got %r. (Example: '
                'django.utils.timezone.now() + timedelta(days=1).)' % (name, value))
    return None


def _end_problem(task):
    start, end = task.start_running, task.end_running
    if end is None or _aware_problem(start, 'start_running') or _aware_problem(end, 'end_running'):
        return None
    if start is not None and end <= start:
        return ('end_running %s is not after start_running %s, so the task could never run. '
                'Give an end after the start, or leave end_running blank for no end.'
                % (end.isoformat(), start.isoformat()))
    changed = task._changed_fields()
    now = timezone.now()
    if end <= now and (changed is None or 'end_running' in changed):
        return ('end_running %s is in the past (now is %s), so the task could never run. '
                'Give a future time, or leave end_running blank for no end.'
                % (end.isoformat(), now.isoformat()))
    return None


def count_problem(value, name, zero, limit, why):
    if not _is_whole(value) or value < 0:
        return ('%s must be a whole number, %s or more; got %r. (Example: 3.)'
                % (name, zero, value))
    if value > limit:
        return '%s must be at most %d (%s); got %r.' % (name, limit, why, value)
    return None


def seconds_problem(value, name, positive):
    if positive and value is None:
        return None  # no time limit
    if not _is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        allowed = ('a number of seconds greater than 0, or None for no limit' if positive
                   else 'a number of seconds, 0 or more')
        return '%s must be %s; got %r. (Example: %s.)' % (
            name, allowed, value, 300 if positive else 60)
    if value > MAX_SECONDS:
        return '%s must be at most %d seconds (365 days); got %r. (Example: %s.)' % (
            name, MAX_SECONDS, value, 300 if positive else 60)
    return None


def priority_problem(value):
    """What is wrong with a run priority, or None: a whole number from -100 to 100."""
    if not _is_whole(value) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        return ('priority must be a whole number from %d to %d (higher runs first); got %r.'
                % (MIN_PRIORITY, MAX_PRIORITY, value))
    return None


def queue_problem(value):
    """What is wrong with a queue name, or None: one of SISY_QUEUES, which workers serve."""
    queues = setting('SISY_QUEUES')
    if not isinstance(value, str) or not QUEUE_NAME.match(value):
        return ('queue_name must be 1 to 50 letters, digits, "_" or "-" (it names a channel); '
                'got %r.' % (value,))
    if value not in queues:
        return ('queue_name %r is not one of SISY_QUEUES (%s); no worker would serve it. Add '
                'it to SISY_QUEUES, or use one of those.' % (value, ', '.join(map(repr, queues))))
    return None


def _is_whole(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def encode_userdata(value):
    """Return userdata as JSON text; raise ValueError unless it is a JSON-able dict."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError('userdata must be a dict of JSON data; got %s %r.'
                         % (type(value).__name__, value))
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except RecursionError:  # the encoder recurses once per level of nesting
        raise ValueError('userdata is nested deeper than JSON can store (dicts and lists '
                         'inside each other, about %d levels or more). Store it flatter.'
                         % sys.getrecursionlimit())
    except (TypeError, ValueError) as error:
        found = _unstorable(value)
        if found:
            raise ValueError(found)
        raise ValueError('userdata %r cannot be stored as JSON: %s' % (value, error))


_LEAVE = object()


def _unstorable(value):
    """Where `value` holds what JSON cannot store (NaN, infinity, itself), said for people.

    None if it holds none of these. Walks the data with a list rather than by
    recursion, so data that contains itself gets an answer, not a RecursionError.
    """
    root = ('userdata',)  # a place is (its container's place, its key)
    walk, holding = [(value, root)], {}  # holding: id -> place, of the open containers
    while walk:
        item, place = walk.pop()
        if item is _LEAVE:
            del holding[place]
            continue
        if id(item) in holding:
            return ('%s is %s itself, which contains it: JSON cannot store data that '
                    'contains itself. Store a copy, or a key to find it by, instead.'
                    % (_spelled(place), _spelled(holding[id(item)])))
        holding[id(item)] = place
        walk.append((_LEAVE, id(item)))
        nested = []
        for key, child in (item.items() if isinstance(item, dict) else enumerate(item)):
            if isinstance(child, float) and not math.isfinite(child):
                return ('%s is %r, which JSON cannot store (it has no NaN or Infinity). '
                        'Store None or a string such as %r instead.'
                        % (_spelled((place, key)), child, str(child)))
            if isinstance(child, (dict, list, tuple)):
                nested.append((child, (place, key)))
        walk.extend(reversed(nested))
    return None


def _spelled(place):
    keys = []
    while len(place) == 2:
        place, key = place
        keys.append(key)
    return place[0] + ''.join('[%r]' % (key,) for key in reversed(keys))


def check_delay_until(when):
    """Raise ValueError unless `when` is an aware datetime in the future."""
    if not isinstance(when, dt.datetime):
        raise ValueError('delay_until must be a datetime; got %s %r.' % (type(when).__name__, when))
    if timezone.is_naive(when):
        raise ValueError('delay_until %s has no time zone; pass an aware datetime, e.g. '
                         'django.utils.timezone.now() + timedelta(days=3).' % (when,))
    if when <= timezone.now():
        raise ValueError('delay_until %s is not in the future (now is %s).'
                         % (when.isoformat(), timezone.now().isoformat()))


# -- a hand-off job's arguments and return value -------------------------------------

MAX_JSON_DEPTH = 100


def json_problem(value, place):
    """What in `value` would not come back the same from JSON, said for people; or None.

    `place` names `value` (e.g. "argument 'when'"). JSON carries None, bools,
    whole and finite numbers, strings, lists and dicts with string keys;
    tuples are carried as lists, as Django's tasks framework does.
    """
    return _json_problem(value, place, set(), 0)


def _json_problem(value, place, open_ids, depth):
    if value is None or isinstance(value, (bool, str)):
        return None
    # int itself, not any numbers.Integral: json.dumps writes no other (numpy.int64 is one).
    if isinstance(value, int):
        try:
            int.__repr__(value)  # the text JSON needs
        except ValueError:  # more digits than sys.get_int_max_str_digits() (Python 3.9.14 on)
            return ('%s is a whole number of more digits than Python writes as text; pass it '
                    'as a string.' % place)
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return ('%s is %r, which JSON cannot carry; pass None or a string instead.'
                % (place, value))
    if not isinstance(value, (list, tuple, dict)):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + '...'
        return ('%s is %s (%s), which JSON cannot carry; pass JSON data (None, bool, int, '
                'float, str, list, dict with str keys), e.g. an id or an ISO 8601 string.'
                % (place, _kind_of(value), shown))
    if depth >= MAX_JSON_DEPTH:
        return '%s is nested deeper than %d levels; pass flatter data.' % (place, MAX_JSON_DEPTH)
    if id(value) in open_ids:
        return '%s contains itself, which JSON cannot carry.' % place
    open_ids.add(id(value))
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    try:
                        back = json.loads(json.dumps({key: 0}))
                    except (TypeError, ValueError):  # a key JSON has no text for (a tuple)
                        return ('%s has the key %r (%s), which JSON cannot carry. Use string '
                                'keys.' % (place, key, _kind_of(key)))
                    return ('%s has the key %r (%s); JSON keys are strings, so it would come '
                            'back as %r. Use string keys.' % (place, key, _kind_of(key), back))
                found = _json_problem(item, '%s[%r]' % (place, key), open_ids, depth + 1)
                if found:
                    return found
        else:
            for index, item in enumerate(value):
                found = _json_problem(item, '%s[%d]' % (place, index), open_ids, depth + 1)
                if found:
                    return found
    finally:
        open_ids.discard(id(value))
    return None


def _kind_of(value):
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == 'builtins' else '%s.%s' % (
        kind.__module__, kind.__qualname__)
    return 'an %s' % name if name[:1].lower() in 'aeiou' else 'a %s' % name


def check_arguments(args, kwargs):
    """Raise TypeError naming the first argument JSON cannot carry (see json_problem)."""
    for index, value in enumerate(args):
        found = json_problem(value, 'positional argument %d' % index)
        if found:
            raise TypeError(found)
    for name, value in kwargs.items():
        found = json_problem(value, 'argument %r' % name)
        if found:
            raise TypeError(found)
