"""Schedules in plain words: the common shapes get short phrases, the rest an exact long one;
and what daylight-saving changes do to the next runs."""

import datetime as dt

import pytest
import pytz

from sisy.describe import describe, dst_notes
from sisy.schedule import InvalidSchedule, Schedule


@pytest.mark.parametrize('expression, words', [
    # The seeds' examples.
    ('* * * * *', 'every minute'),
    ('30 0 * * *', 'at 00:30 every day'),
    ('*/5 * * * *', 'every 5 minutes'),
    ('0,15,30,45 9-17 * * mon-fri', 'every 15 minutes from 09:00 to 17:45 on Monday to Friday'),
    ('*/5 0,3,6,9 * * *', 'every 5 minutes from 00:00 to 00:55, 03:00 to 03:55, '
                          '06:00 to 06:55 and 09:00 to 09:55'),
    ('0-10,15-20 * * * *', 'at minutes 0 to 10 and 15 to 20 of every hour'),
    ('0 9-17 * * mon-fri', 'every hour from 09:00 to 17:00 on Monday to Friday'),
    ('* * * * * */30', 'every 30 seconds'),
    # Hours.
    ('0 * * * *', 'every hour on the hour'),
    ('30 * * * *', 'every hour at 30 minutes past'),
    ('0 */2 * * *', 'every 2 hours from 00:00 to 22:00'),
    ('0 9,17 * * *', 'at 09:00 and 17:00 every day'),
    ('* 9 * * *', 'every minute from 09:00 to 09:59'),
    ('0,30 * * * *', 'every 30 minutes'),
    # Days, weeks and months.
    ('0 0 1 * *', 'at 00:00 on day 1 of the month'),
    ('0 0 l * *', 'at 00:00 on the last day of the month'),
    ('0 0 1,15,L * *', 'at 00:00 on days 1, 15 and the last day of the month'),
    ('0 0 1-7 * *', 'at 00:00 on days 1 to 7 of the month'),
    ('0 12 * * sat,sun', 'at 12:00 on Saturday and Sunday'),
    ('0 12 * * 6,7', 'at 12:00 on Saturday and Sunday'),
    ('0 0 * * 0', 'at 00:00 on Sunday'),
    ('0 8 * * mon,wed-fri', 'at 08:00 on Monday and Wednesday to Friday'),
    ('0 0 * 12 *', 'at 00:00 every day in December'),
    ('0 0 1 jan-mar *', 'at 00:00 on day 1 of the month in January to March'),
    # Cron runs when either day field matches, if both are given.
    ('0 0 1 * mon', 'at 00:00 on day 1 of the month or on Monday'),
    ('0 0 1-31 * mon', 'at 00:00 every day'),
    # Seconds.
    ('* * * * * *', 'every second'),
    ('*/5 * * * * 30', 'every 5 minutes, at second 30'),
    ('* * * * * 0', 'every minute'),
])
def test_common_schedules_in_plain_words(expression, words):
    assert describe(expression) == words


@pytest.mark.parametrize('expression, words', [
    ('5-59/15 * * * *', 'at minutes 5, 20, 35 and 50 of every hour'),
    ('15 1,3,5,7,9,11,13 * * *', 'at minute 15 of hours 1, 3, 5, 7, 9, 11 and 13'),
    ('0 0 * * mon#1', 'on the cron schedule "0 0 * * mon#1"'),
])
def test_complicated_schedules_get_a_generic_but_exact_wording(expression, words):
    assert describe(expression) == words


def test_invalid_schedule_is_refused_with_the_usual_error():
    with pytest.raises(InvalidSchedule, match="hour field '25'"):
        describe('0 25 * * *')


# -- daylight-saving notes for the next runs ------------------------------------------

LONDON = pytz.timezone('Europe/London')
NEW_YORK = pytz.timezone('America/New_York')
LORD_HOWE = pytz.timezone('Australia/Lord_Howe')  # clocks move by 30 minutes


def notes_for(expression, after, zone=LONDON, count=5):
    schedule = Schedule(expression)
    return dst_notes(schedule, schedule.upcoming(after, zone, count), zone, after=after)


def utc(*fields):
    return dt.datetime(*fields, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize('expression, after, zone, notes', [
    # Clocks go forward 01:00 -> 02:00 on Sunday 29 March 2026 in London.
    ('30 1 * * *', utc(2026, 3, 27, 12), LONDON,
     ['01:30 does not exist on 29 March; runs at 02:00']),
    ('0,30 1 * * *', utc(2026, 3, 28, 12), LONDON,
     ['01:00 and 01:30 do not exist on 29 March; runs once, at 02:00']),
    ('0-59 1 * * *', utc(2026, 3, 28, 12), LONDON,
     ['01:00 to 01:59 (60 times) do not exist on 29 March; runs once, at 02:00']),
    ('30 2 * * *', utc(2026, 3, 7, 12), NEW_YORK,
     ['02:30 does not exist on 8 March; runs at 03:00']),
    ('15 2 * * *', utc(2026, 10, 2, 12), LORD_HOWE,
     ['02:15 does not exist on 4 October; runs at 02:30']),
    # Clocks go back 02:00 -> 01:00 on Sunday 25 October 2026 in London.
    ('30 1 * * *', utc(2026, 10, 23, 12), LONDON,
     ['01:30 happens twice on 25 October; runs once, at the first']),
    ('45 1 * * *', utc(2026, 4, 3, 12), LORD_HOWE,
     ['01:45 happens twice on 5 April; runs once, at the first']),
    # Wildcard jobs keep real time: no runs in a gap, runs in both copies of an hour.
    ('*/30 * * * *', utc(2026, 3, 29, 0, 10), LONDON,
     ['01:00 to 01:59 does not exist on 29 March; no runs then']),
    ('* 1 * * *', utc(2026, 3, 28, 23, 10), LONDON,  # the gap is before the first run
     ['01:00 to 01:59 does not exist on 29 March; no runs then']),
    ('*/30 * * * *', utc(2026, 10, 25, 0, 10), LONDON,
     ['01:00 to 01:59 happens twice on 25 October; runs in both']),
    ('*/20 * * * *', utc(2026, 4, 4, 14, 25), LORD_HOWE,
     ['01:30 to 01:59 happens twice on 5 April; runs in both']),
    # Times the changes do not touch get no note.
    ('0 9 * * *', utc(2026, 3, 27, 12), LONDON, []),
    ('0 2 * * *', utc(2026, 3, 27, 12), LONDON, []),
    ('30 2 * * *', utc(2026, 10, 23, 12), LONDON, []),
    ('15 1 * * *', utc(2026, 4, 3, 12), LORD_HOWE, []),
    ('*/30 * * * *', utc(2026, 3, 29, 2, 10), LONDON, []),
    ('30 1 * * *', utc(2026, 6, 1), LONDON, []),
])
def test_dst_notes_say_what_a_clock_change_does_to_the_next_runs(expression, after, zone,
                                                                  notes):
    assert notes_for(expression, after, zone) == notes


def test_dst_notes_only_for_the_runs_listed():
    # The fourth of five runs is the moved one; the first three need no note.
    after = utc(2026, 3, 25, 12)
    assert notes_for('30 1 * * *', after) == ['01:30 does not exist on 29 March; runs at 02:00']
    assert notes_for('30 1 * * *', after, count=3) == []


def test_dst_notes_name_seconds_when_the_schedule_has_them():
    assert notes_for('30 1 * * * 15', utc(2026, 3, 28, 12)) == [
        '01:30:15 does not exist on 29 March; runs at 02:00']


def test_dst_notes_take_an_expression_and_any_runs():
    runs = [utc(2026, 3, 29, 1)]  # 02:00 BST, the end of the gap
    assert dst_notes('30 1 * * *', runs, LONDON) == [
        '01:30 does not exist on 29 March; runs at 02:00']
    assert dst_notes('30 1 * * *', [], LONDON) == []
