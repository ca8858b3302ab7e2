"""Say in plain words when a cron schedule runs, for the admin and the shell.

Pure logic, like schedule.py. Common shapes get a short phrase ("every 5
minutes", "at 00:30 every day"); anything else is described field by field,
which is longer but never wrong. Times are local wall-clock times.
"""

import datetime as dt

from croniter import croniter

from sisy.schedule import Schedule, local_to_utc

WEEKDAYS = ('Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday')
MONTHS = ('', 'January', 'February', 'March', 'April', 'May', 'June', 'July',
          'August', 'September', 'October', 'November', 'December')
# How many separate clock times are still worth listing one by one.
MAX_LISTED_TIMES = 6
# How many wall times a daylight-saving note names before it gives a span instead.
MAX_NOTED_TIMES = 3
ONE_SECOND = dt.timedelta(seconds=1)


def describe(expression):
    """Return what `expression` means in plain English; InvalidSchedule if it is not valid."""
    schedule = Schedule(expression)
    expanded, nth_weekdays = croniter.expand(schedule.expression)
    if nth_weekdays:
        return 'on the cron schedule "%s"' % schedule.expression
    minutes = _restricted(expanded[0], range(60))
    hours = _restricted(expanded[1], range(24))
    days = _restricted(expanded[2], range(1, 32))
    months = _restricted(expanded[3], range(1, 13))
    weekdays = _restricted([0 if day == 7 else day for day in expanded[4]], range(7))
    seconds = _restricted(expanded[5], range(60)) if len(expanded) > 5 else [0]
    # Cron runs on either day field when both are given (croniter decides by '*').
    either_day = expanded[2][0] != '*' and expanded[4][0] != '*'
    if either_day and (days is None or weekdays is None):
        days = weekdays = None

    when, at_fixed_times = _time_phrase(minutes, hours)
    if seconds != [0]:
        when = _with_seconds(when, seconds, minutes is None and hours is None)
        at_fixed_times = False
    day_words = _day_phrase(days, weekdays, either_day)
    if day_words:
        when += ' ' + day_words
    elif at_fixed_times:
        when += ' every day'
    if months is not None:
        when += ' in ' + _spans(months, lambda month: MONTHS[month])
    return when


def _restricted(values, full):
    """Sorted values of a field, or None when the field allows every value."""
    if values == ['*'] or set(values) == set(full):
        return None
    return sorted(set(values), key=lambda value: (value == 'l', value))


def _time_phrase(minutes, hours):
    """Describe minute and hour fields; also say whether the result lists clock times."""
    step = _step(minutes, 60)
    if step:
        every = 'every minute' if step == 1 else 'every %d minutes' % step
        last = 59 if minutes is None else minutes[-1]
        if hours is None:
            return every, False
        runs = _runs(hours)
        if len(runs) <= 4:
            return every + ' from ' + _and(['%s to %s' % (_clock(first, 0), _clock(end, last))
                                            for first, end in runs]), False
        return every + ' in hours ' + _spans(hours, str), False
    if minutes is not None and len(minutes) == 1:
        minute = minutes[0]
        if hours is None:
            if minute == 0:
                return 'every hour on the hour', False
            return 'every hour at %d minutes past' % minute, False
        hour_step = _step(hours, 24)
        runs = _runs(hours)
        if len(hours) > 1 and (hour_step or len(runs) == 1):
            every = 'every hour' if len(runs) == 1 else 'every %d hours' % hour_step
            return '%s from %s to %s' % (every, _clock(hours[0], minute),
                                         _clock(hours[-1], minute)), False
    if minutes is not None and hours is not None \
            and len(minutes) * len(hours) <= MAX_LISTED_TIMES:
        return 'at ' + _and([_clock(hour, minute) for hour in hours for minute in minutes]), True
    minute_words = ('every minute' if minutes is None else
                    'at minute%s %s' % ('s' if len(minutes) > 1 else '', _spans(minutes, str)))
    hour_words = 'of every hour' if hours is None else 'of hours ' + _spans(hours, str)
    return '%s %s' % (minute_words, hour_words), False


def _with_seconds(when, seconds, every_minute):
    step = _step(seconds, 60)
    if every_minute and step:
        return 'every second' if step == 1 else 'every %d seconds' % step
    if step:
        return '%s, every %s of those minutes' % (
            when, 'second' if step == 1 else '%d seconds' % step)
    return '%s, at second%s %s' % (when, 's' if len(seconds) > 1 else '', _spans(seconds, str))


def _day_phrase(days, weekdays, either_day):
    parts = []
    if days is not None:
        numbers = [day for day in days if day != 'l']
        words = _span_words(numbers, str) + (['the last day'] if 'l' in days else [])
        if numbers:
            words[0] = ('days ' if len(numbers) > 1 else 'day ') + words[0]
        parts.append('on %s of the month' % _and(words))
    if weekdays is not None:
        # Weeks read Monday first, so "sat-sun" is one span and "mon-fri" another.
        monday_first = sorted(weekdays, key=lambda day: (day - 1) % 7)
        parts.append('on ' + _spans(monday_first, lambda day: WEEKDAYS[day],
                                    key=lambda day: (day - 1) % 7))
    return (' or ' if either_day else ' ').join(parts)


def _step(values, size):
    """N when `values` (None: all) are every N-th value from 0; otherwise None."""
    if values is None:
        return 1
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1]
    return step if values == list(range(0, size, step)) else None


def _runs(values, key=lambda value: value):
    """Split sorted values into runs of consecutive ones: [(first, last), ...]."""
    runs = []
    for value in values:
        if runs and key(value) == key(runs[-1][1]) + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return [tuple(run) for run in runs]


def _spans(values, name, key=lambda value: value):
    """'1, 3 and 5 to 9': values joined, three or more in a row shown as a span."""
    return _and(_span_words(values, name, key))


def _span_words(values, name, key=lambda value: value):
    words = []
    for first, last in _runs(values, key):
        if first == last:
            words.append(name(first))
        elif key(last) - key(first) == 1:
            words.extend([name(first), name(last)])
        else:
            words.append('%s to %s' % (name(first), name(last)))
    return words


def _and(words):
    if len(words) < 2:
        return ''.join(words)
    return '%s and %s' % (', '.join(words[:-1]), words[-1])


def _clock(hour, minute):
    return '%02d:%02d' % (hour, minute)


def local_time(when, zone):
    """An instant as an operator reads it: wall time in `zone` with its abbreviation."""
    if when is None:
        return '-'
    return when.astimezone(zone).strftime('%a %Y-%m-%d %H:%M:%S %Z')


# -- daylight saving ------------------------------------------------------------------


def dst_notes(schedule, runs, zone, after=None):
    """Say, in words, how daylight-saving changes affect `runs` of `schedule`.

    `runs` are aware instants in order, as Schedule.upcoming or Task.planned_runs
    give them; `after` (optional) is when the list starts, so that a change
    between it and the first run counts too. Returns a list of notes, each once,
    in the order of the runs, following the rules of sisy.schedule:

    - a fixed-time run moved to the end of a spring-forward gap: "01:30 does not
      exist on 29 March; runs at 02:00";
    - a fixed-time run at a wall time that happens twice: "01:30 happens twice on
      25 October; runs once, at the first";
    - a wildcard job (``*/15 * * * *``) with slots in a gap between two runs:
      "01:00 to 01:59 does not exist on 29 March; no runs then", or with a run in
      a repeated hour: "01:00 to 01:59 happens twice on 25 October; runs in both".

    A gap that two changes of offset between the same two runs hide (runs months
    apart) is not noted. Pure: no ORM, no clock.
    """
    schedule = schedule if isinstance(schedule, Schedule) else Schedule(schedule)
    notes = []

    def add(note):
        if note and note not in notes:
            notes.append(note)

    previous = after
    for run in runs:
        if schedule.is_wildcard:
            if previous is not None and previous < run:
                add(_wildcard_gap_note(schedule, previous, run, zone))
            add(_wildcard_repeat_note(schedule, run, zone))
        else:
            add(_moved_note(schedule, run, zone))
            add(_repeated_note(schedule, run, zone))
        previous = run
    return notes


def _moved_note(schedule, run, zone):
    """A fixed-time run at the end of a spring-forward gap: which slots it stands for."""
    before = run - ONE_SECOND
    if _offset(before, zone) >= _offset(run, zone):
        return None
    missing = _slots_between(schedule, _wall(before, zone), _wall(run, zone))
    if not missing:
        return None
    if len(missing) == 1:
        return '%s does not exist on %s; runs at %s' % (
            _hhmm(missing[0]), _day(missing[0]), _hhmm(_wall(run, zone)))
    return '%s do not exist on %s; runs once, at %s' % (
        _times(missing), _day(missing[0]), _hhmm(_wall(run, zone)))


def _repeated_note(schedule, run, zone):
    """A fixed-time run at a wall time that happens twice: it runs at the first only."""
    wall = _wall(run, zone)
    instants = local_to_utc(wall, zone)
    if len(instants) < 2 or run != instants[0] or not _is_slot(schedule, wall):
        return None
    return '%s happens twice on %s; runs once, at the first' % (_hhmm(wall), _day(wall))


def _wildcard_gap_note(schedule, previous, run, zone):
    """Slots of a wildcard job lost in a spring-forward gap between two runs."""
    if _offset(previous, zone) >= _offset(run, zone):
        return None
    change = _change_between(previous, run, zone)
    end = _wall(change, zone)
    start = end - (_offset(change, zone) - _offset(change - ONE_SECOND, zone))
    if not _slots_between(schedule, start - ONE_SECOND, end):
        return None
    return '%s does not exist on %s; no runs then' % (_span(start, end), _day(start))


def _wildcard_repeat_note(schedule, run, zone):
    """A wildcard job's run in a repeated hour: it runs in both copies."""
    instants = local_to_utc(_wall(run, zone), zone)
    if len(instants) < 2:
        return None
    change = _change_between(instants[0], instants[1], zone)
    start = _wall(change, zone)
    end = start + (_offset(change - ONE_SECOND, zone) - _offset(change, zone))
    return '%s happens twice on %s; runs in both' % (_span(start, end), _day(start))


def _change_between(first, last, zone):
    """The first instant in (first, last] with the offset `last` has (whole seconds)."""
    target = _offset(last, zone)
    low, high = first, last
    while high - low > ONE_SECOND:
        middle = low + (high - low) // 2
        if _offset(middle, zone) == target:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond and \
        _offset(high.replace(microsecond=0), zone) == target else high


def _slots_between(schedule, start, end):
    """The schedule's wall times strictly after `start` and before `end` (naive)."""
    walls, found = croniter(schedule.expression, start), []
    while True:
        wall = walls.get_next(dt.datetime)
        if wall >= end:
            return found
        found.append(wall)


def _is_slot(schedule, wall):
    return croniter(schedule.expression, wall - ONE_SECOND).get_next(dt.datetime) == wall


def _wall(instant, zone):
    return instant.astimezone(zone).replace(tzinfo=None)


def _offset(instant, zone):
    return instant.astimezone(zone).utcoffset()


def _hhmm(wall):
    return wall.strftime('%H:%M:%S' if wall.second else '%H:%M')


def _day(wall):
    return '%d %s' % (wall.day, MONTHS[wall.month])


def _span(start, end):
    """'01:00 to 01:59': the wall times from `start` up to, not including, `end`."""
    step = ONE_SECOND if (start.second or end.second) else dt.timedelta(minutes=1)
    return '%s to %s' % (_hhmm(start), (end - step).strftime(
        '%H:%M:%S' if step == ONE_SECOND else '%H:%M'))


def _times(walls):
    if len(walls) <= MAX_NOTED_TIMES:
        return _and([_hhmm(wall) for wall in walls])
    return '%s to %s (%d times)' % (_hhmm(walls[0]), _hhmm(walls[-1]), len(walls))
