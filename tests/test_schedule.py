"""Cron maths in local time: the seeds' examples, DST days, and bad input."""

import datetime as dt

import pytest
import pytz

from sisy.schedule import InvalidSchedule, Schedule, local_to_utc, validate_schedule

UTC = dt.timezone.utc
LONDON = pytz.timezone('Europe/London')
NEW_YORK = pytz.timezone('America/New_York')


def local_runs(expression, tz, start, count):
    """The next `count` runs after naive local `start`, as naive local times with zone names."""
    after = tz.localize(start).astimezone(UTC)
    return [instant.astimezone(tz).strftime('%Y-%m-%d %H:%M:%S %Z')
            for instant in Schedule(expression).upcoming(after, tz, count)]


def utc_runs(expression, start, count):
    return [instant.strftime('%a %Y-%m-%d %H:%M:%S')
            for instant in Schedule(expression).upcoming(start.replace(tzinfo=UTC), UTC, count)]


# -- the seeds' examples ---------------------------------------------------------

def test_every_minute_is_the_default_shape():
    assert utc_runs('* * * * *', dt.datetime(2026, 1, 5, 9, 0, 30), 3) == [
        'Mon 2026-01-05 09:01:00', 'Mon 2026-01-05 09:02:00', 'Mon 2026-01-05 09:03:00']


def test_thirty_past_midnight_is_local_time():
    assert local_runs('30 0 * * *', LONDON, dt.datetime(2026, 7, 1, 12, 0), 2) == [
        '2026-07-02 00:30:00 BST', '2026-07-03 00:30:00 BST']


def test_every_five_minutes():
    assert utc_runs('*/5 * * * *', dt.datetime(2026, 1, 5, 9, 3), 3) == [
        'Mon 2026-01-05 09:05:00', 'Mon 2026-01-05 09:10:00', 'Mon 2026-01-05 09:15:00']


def test_lists_of_ranges():
    minutes = [int(run[-5:-3]) for run in utc_runs('0-10,15-20 * * * *',
                                                   dt.datetime(2026, 1, 5, 8, 59), 17)]
    assert minutes == list(range(0, 11)) + list(range(15, 21))


def test_business_hours_on_weekdays():
    runs = utc_runs('0,15,30,45 9-17 * * mon-fri', dt.datetime(2026, 1, 9, 17, 40), 3)
    # Friday 17:45 is the last of the week; Monday 09:00 is next.
    assert runs == ['Fri 2026-01-09 17:45:00', 'Mon 2026-01-12 09:00:00',
                    'Mon 2026-01-12 09:15:00']


def test_every_five_seconds_in_given_hours():
    runs = utc_runs('*/5 0,3,6,9 * * *', dt.datetime(2026, 1, 5, 1, 0), 2)
    assert runs == ['Mon 2026-01-05 03:00:00', 'Mon 2026-01-05 03:05:00']


def test_business_hours_on_the_hour():
    assert utc_runs('0 9-17 * * mon-fri', dt.datetime(2026, 1, 10, 12, 0), 2) == [
        'Mon 2026-01-12 09:00:00', 'Mon 2026-01-12 10:00:00']


def test_sixth_field_is_seconds():
    assert utc_runs('* * * * * */30', dt.datetime(2026, 1, 5, 9, 0, 1), 3) == [
        'Mon 2026-01-05 09:00:30', 'Mon 2026-01-05 09:01:00', 'Mon 2026-01-05 09:01:30']


def test_l_is_the_last_day_of_the_month():
    runs = utc_runs('0 12 l * *', dt.datetime(2028, 1, 31, 13, 0), 3)
    assert runs == ['Tue 2028-02-29 12:00:00', 'Fri 2028-03-31 12:00:00', 'Sun 2028-04-30 12:00:00']


@pytest.mark.parametrize('sunday', ['0', '7', 'sun'])
def test_sunday_is_0_7_or_sun(sunday):
    assert utc_runs('0 8 * * %s' % sunday, dt.datetime(2026, 1, 5), 2) == [
        'Sun 2026-01-11 08:00:00', 'Sun 2026-01-18 08:00:00']


def test_day_names_in_ranges_and_upper_case_normalised():
    schedule = Schedule('0 8 * * MON-wed')
    assert schedule.expression == '0 8 * * mon-wed'
    assert utc_runs('0 8 * * mon-wed', dt.datetime(2026, 1, 7, 9, 0), 2) == [
        'Mon 2026-01-12 08:00:00', 'Tue 2026-01-13 08:00:00']


def test_next_after_is_strictly_after():
    schedule = Schedule('0 * * * *')
    on_the_hour = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert schedule.next_after(on_the_hour, UTC) == dt.datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


# -- daylight saving: Debian cron's convention -------------------------------------

def test_london_spring_forward_fixed_time_runs_once_after_the_gap():
    # 01:00 GMT jumps to 02:00 BST on 2026-03-29: 01:30 never happens that day.
    assert local_runs('30 1 * * *', LONDON, dt.datetime(2026, 3, 28, 12), 3) == [
        '2026-03-29 02:00:00 BST', '2026-03-30 01:30:00 BST', '2026-03-31 01:30:00 BST']


def test_london_fall_back_fixed_time_runs_once():
    # 02:00 BST falls back to 01:00 GMT on 2026-10-25: 01:30 happens twice.
    assert local_runs('30 1 * * *', LONDON, dt.datetime(2026, 10, 24, 12), 2) == [
        '2026-10-25 01:30:00 BST', '2026-10-26 01:30:00 GMT']


def test_london_spring_forward_wildcard_keeps_real_time_rhythm():
    assert local_runs('*/15 * * * *', LONDON, dt.datetime(2026, 3, 29, 0, 30), 4) == [
        '2026-03-29 00:45:00 GMT', '2026-03-29 02:00:00 BST',
        '2026-03-29 02:15:00 BST', '2026-03-29 02:30:00 BST']


def test_london_fall_back_wildcard_runs_in_both_copies_of_the_hour():
    runs = local_runs('*/15 * * * *', LONDON, dt.datetime(2026, 10, 25, 0, 50), 9)
    assert runs == [
        '2026-10-25 01:00:00 BST', '2026-10-25 01:15:00 BST', '2026-10-25 01:30:00 BST',
        '2026-10-25 01:45:00 BST', '2026-10-25 01:00:00 GMT', '2026-10-25 01:15:00 GMT',
        '2026-10-25 01:30:00 GMT', '2026-10-25 01:45:00 GMT', '2026-10-25 02:00:00 GMT']


def test_new_york_spring_forward_fixed_time_before_the_gap_is_unaffected():
    # 02:00 EST jumps to 03:00 EDT on 2026-03-08; 01:30 exists as usual.
    assert local_runs('30 1 * * *', NEW_YORK, dt.datetime(2026, 3, 7, 12), 2) == [
        '2026-03-08 01:30:00 EST', '2026-03-09 01:30:00 EDT']


def test_new_york_spring_forward_fixed_time_inside_the_gap():
    assert local_runs('30 2 * * *', NEW_YORK, dt.datetime(2026, 3, 7, 12), 2) == [
        '2026-03-08 03:00:00 EDT', '2026-03-09 02:30:00 EDT']


def test_new_york_fall_back_fixed_time_runs_once():
    # 02:00 EDT falls back to 01:00 EST on 2026-11-01.
    assert local_runs('30 1 * * *', NEW_YORK, dt.datetime(2026, 10, 31, 12), 2) == [
        '2026-11-01 01:30:00 EDT', '2026-11-02 01:30:00 EST']


def test_new_york_spring_forward_wildcard():
    assert local_runs('*/15 * * * *', NEW_YORK, dt.datetime(2026, 3, 8, 1, 40), 3) == [
        '2026-03-08 01:45:00 EST', '2026-03-08 03:00:00 EDT', '2026-03-08 03:15:00 EDT']


def test_new_york_fall_back_wildcard_counts_real_quarter_hours():
    runs = local_runs('*/15 * * * *', NEW_YORK, dt.datetime(2026, 11, 1, 0, 50), 9)
    assert runs[:5] == ['2026-11-01 01:00:00 EDT', '2026-11-01 01:15:00 EDT',
                        '2026-11-01 01:30:00 EDT', '2026-11-01 01:45:00 EDT',
                        '2026-11-01 01:00:00 EST']
    instants = Schedule('*/15 * * * *').upcoming(
        NEW_YORK.localize(dt.datetime(2026, 11, 1, 0, 50)).astimezone(UTC), NEW_YORK, 9)
    gaps = {later - earlier for earlier, later in zip(instants, instants[1:])}
    assert gaps == {dt.timedelta(minutes=15)}


def test_fixed_job_at_the_gap_does_not_run_again_after_its_late_run():
    schedule = Schedule('30 1 * * *')
    late_run = LONDON.localize(dt.datetime(2026, 3, 29, 2, 0)).astimezone(UTC)
    assert schedule.next_after(late_run, LONDON).astimezone(LONDON).strftime('%m-%d %H:%M') \
        == '03-30 01:30'


def test_local_to_utc_counts_instants():
    assert local_to_utc(dt.datetime(2026, 3, 29, 1, 30), LONDON) == []
    assert len(local_to_utc(dt.datetime(2026, 10, 25, 1, 30), LONDON)) == 2
    assert local_to_utc(dt.datetime(2026, 7, 1, 12, 0), LONDON) == [
        dt.datetime(2026, 7, 1, 11, 0, tzinfo=UTC)]


# -- bad input -----------------------------------------------------------------

@pytest.mark.parametrize('expression, named', [
    ('61 * * * *', "minute field '61'"),
    ('* 24 * * *', "hour field '24'"),
    ('* * 32 * *', "day of month field '32'"),
    ('* * 0 * *', "day of month field '0'"),
    ('* * * 13 *', "month field '13'"),
    ('* * * * 8', "day of week field '8'"),
    ('* * * * funday', "day of week field 'funday'"),
    ('* * * * * 60', "second field '60'"),
    ('*/0 * * * *', "minute field '*/0'"),
    ('H * * * *', "minute field 'h'"),
    ('; rm -rf / * * * *', 'has 8 fields'),
    ('* * * *', "'* * * *' has 4 fields"),
    ('', "'' has 0 fields"),
    ('0 0 31 2 *', 'never matches'),
])
def test_bad_schedules_name_the_value(expression, named):
    with pytest.raises(InvalidSchedule) as error:
        Schedule(expression)
    assert named in str(error.value)
    assert isinstance(error.value, ValueError)


def test_non_string_schedule():
    with pytest.raises(InvalidSchedule, match='not 5'):
        validate_schedule(5)
