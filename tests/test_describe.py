"""Schedules in plain words: the common shapes get short phrases, the rest an exact long one."""

import pytest

from sisy.describe import describe
from sisy.schedule import InvalidSchedule


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
