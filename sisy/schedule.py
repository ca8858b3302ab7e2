"""Cron schedules read as local wall-clock time and turned into UTC instants.

Pure logic: no ORM, no channels, no clock. Callers pass the time in.

Daylight-saving changes follow Debian cron: a *fixed-time* job (neither the
minute nor the hour field starts with ``*``) runs once when a wall-clock time
happens twice, and at the end of the jump when its time is skipped. A
*wildcard* job (``*/15 * * * *``) keeps its real-time rhythm: it runs in both
copies of a repeated hour and simply has no runs inside a skipped one.
"""

import datetime as dt
import functools
import re
import threading

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = dt.timezone.utc

FIELDS = (
    # name, allowed range, allowed words (lower case)
    ('minute', '0-59', ()),
    ('hour', '0-23', ()),
    ('day of month', '1-31 or l (last day)', ('l',)),
    ('month', '1-12 or jan-dec', ('jan', 'feb', 'mar', 'apr', 'may', 'jun',
                                  'jul', 'aug', 'sep', 'oct', 'nov', 'dec')),
    ('day of week', '0-7 (0 and 7 are Sunday) or mon-sun',
     ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')),
    ('second', '0-59', ()),
)
FORMAT_HELP = ('5 fields "minute hour day-of-month month day-of-week", '
               'or 6 with seconds last, e.g. "30 0 * * *" or "* * * * * */30"')
FIELD_SYNTAX = re.compile(r'^[0-9a-z*/,#-]+$')

# No daylight-saving jump moves clocks by more than two hours.
TRANSITION_WINDOW = dt.timedelta(hours=3)
# Wall time read as UTC is within a day of the real instant, and no zone
# changes its offset twice within two days.
ONE_DAY = dt.timedelta(days=1)
ONE_SECOND = dt.timedelta(seconds=1)


class InvalidSchedule(ValueError):
    """A schedule string that is not a cron expression Sisy can run."""


class Schedule:
    """A validated cron expression that computes run times in a time zone."""

    def __init__(self, expression):
        self.expression, self.is_wildcard = _parse(expression)

    def __repr__(self):
        return 'Schedule(%r)' % self.expression

    def next_after(self, after, tz):
        """Return the first run time strictly after the aware datetime `after`, in UTC."""
        after = after.astimezone(UTC)
        start = _wall(after, tz) - _offset_spread(tz, after)
        walls = _walls_from(self.expression, start.replace(microsecond=0) - ONE_SECOND)
        best = stop_at = None
        while True:
            wall = walls.get_next(dt.datetime)
            if stop_at is not None and wall > stop_at:
                return best
            for instant in self._instants(wall, tz):
                if instant > after and (best is None or instant < best):
                    best = instant
                    # Later wall times can still map to earlier instants only
                    # within a daylight-saving change near `best`.
                    stop_at = wall + _offset_spread(tz, best)

    def upcoming(self, after, tz, count):
        """Return the next `count` run times after `after`, in UTC."""
        times = []
        for _ in range(count):
            after = self.next_after(after, tz)
            times.append(after)
        return times

    def _instants(self, wall, tz):
        """The instants at which this job runs for one matching wall-clock time."""
        instants = local_to_utc(wall, tz)
        if not instants:
            return [] if self.is_wildcard else [_end_of_gap(wall, tz)]
        if len(instants) == 2 and not self.is_wildcard:
            return instants[:1]
        return instants


@functools.lru_cache(maxsize=1024)
def _parse(expression):
    """Validate `expression`; return it normalized and whether it is a wildcard job.

    Cached: a tick claiming many tasks with the same few schedules parses each once.
    """
    if not isinstance(expression, str):
        raise InvalidSchedule('Schedule must be a string such as "30 0 * * *", '
                              'not %r.' % (expression,))
    fields = expression.lower().split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule('Schedule %r has %d fields; expected %s.'
                              % (expression, len(fields), FORMAT_HELP))
    for position, text in enumerate(fields):
        _check_field(expression, position, text, len(fields))
    normalized = ' '.join(fields)
    try:
        croniter(normalized, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise InvalidSchedule('Schedule %r never matches a real date (check the day '
                              'of month against the month).' % expression)
    # Debian cron's rule: a leading "*" in the minute or hour field makes a
    # job follow real time across daylight-saving changes.
    return normalized, fields[0].startswith('*') or fields[1].startswith('*')


_iterators = threading.local()


def _walls_from(expression, start):
    """A croniter over `expression` from `start`, reused per thread (building one is costly)."""
    cache = _iterators.__dict__.setdefault('by_expression', {})
    walls = cache.get(expression)
    if walls is None:
        if len(cache) >= 1024:
            cache.clear()
        walls = cache[expression] = croniter(expression, start)
    else:
        walls.set_current(start, force=True)
    return walls


def skipped_wall_time(schedule, instant, tz):
    """The wall time a fixed-time job could not run at, if `instant` stands in for it.

    Such a run is placed at the end of a spring-forward gap; returns the
    missing wall time (naive), or None when `instant` is an ordinary slot.
    """
    if schedule.is_wildcard or _offset(tz, instant - ONE_SECOND) == _offset(tz, instant):
        return None
    before = _wall(instant - ONE_SECOND, tz)
    missing = _walls_from(schedule.expression, before).get_next(dt.datetime)
    return missing if missing < _wall(instant, tz) else None


def count_slots(schedule, after, until, tz, limit=100):
    """About how many run times of `schedule` fall in (after, until], and the last one.

    Counted on the wall clock (a daylight-saving change may make it one off),
    at most `limit`: it says how many slots one late run stood for.
    """
    walls = _walls_from(schedule.expression, _wall(after, tz))
    end = _wall(until, tz)
    count, last = 0, None
    while count < limit:
        wall = walls.get_next(dt.datetime)
        if wall > end:
            break
        count, last = count + 1, wall
    if last is None:
        return 0, None
    instants = local_to_utc(last, tz) or [_end_of_gap(last, tz)]
    return count, instants[0]


def validate_schedule(expression):
    """Raise InvalidSchedule unless `expression` is a usable schedule; return it normalized."""
    return Schedule(expression).expression


def _check_field(expression, position, text, field_count):
    """Raise InvalidSchedule naming the field when one field is not valid."""
    name, allowed, words = FIELDS[position]
    bad = not FIELD_SYNTAX.match(text) or any(
        word not in words for word in re.findall('[a-z]+', text))
    if not bad:
        probe = ['*'] * field_count
        probe[position] = text
        try:
            croniter(' '.join(probe))
        except (CroniterError, ValueError, KeyError, IndexError):
            bad = True
    if bad:
        raise InvalidSchedule('Schedule %r: %s field %r is not valid; it takes %s, as *, '
                              '*/x, x-y or a comma-separated list of those.'
                              % (expression, name, text, allowed))


def local_to_utc(wall, tz):
    """Return the UTC instants (0, 1 or 2, sorted) whose local time in `tz` is `wall`."""
    around = wall.replace(tzinfo=UTC)
    offsets = {_offset(tz, around + shift) for shift in (-ONE_DAY, dt.timedelta(0), ONE_DAY)}
    candidates = {around - offset for offset in offsets}
    return sorted(instant for instant in candidates if _wall(instant, tz) == wall)


def _end_of_gap(wall, tz):
    """Return the instant clocks jumped forward over the missing time `wall`."""
    around = wall.replace(tzinfo=UTC)
    offsets = [_offset(tz, around + shift) for shift in (-ONE_DAY, ONE_DAY)]
    low, high = around - max(offsets), around - min(offsets)
    while high - low > ONE_SECOND:
        middle = low + (high - low) // 2
        if _wall(middle, tz) < wall:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _wall(instant, tz):
    return instant.astimezone(tz).replace(tzinfo=None)


def _offset(tz, instant):
    return instant.astimezone(tz).utcoffset()


def _offset_spread(tz, instant):
    """How far the UTC offset of `tz` moves within a few hours of `instant`."""
    offsets = [_offset(tz, instant + shift) for shift in
               (-TRANSITION_WINDOW, dt.timedelta(0), TRANSITION_WINDOW)]
    return max(offsets) - min(offsets)
