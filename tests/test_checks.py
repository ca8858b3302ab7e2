"""System checks: each mistake gets its id, a message naming the value, and a fix."""

import pytest
from channels.routing import include, route
from django.core import checks
from django.test import override_settings

from sisy import checks as sisy_checks

MEMORY = 'asgiref.inmemory.ChannelLayer'
IPC = 'asgi_ipc.IPCChannelLayer'


def elsewhere(message):
    """A consumer that is not Sisy's."""


no_sisy_routing = [route('http.request', elsewhere)]
hijacked_routing = [route('sisy.run_task', elsewhere), include('sisy.routing.channel_routing')]
good_routing = [route('http.request', elsewhere), include('sisy.routing.channel_routing')]


def layers(routing='tests.test_checks.good_routing', backend=IPC):
    layer = {'BACKEND': backend}
    if routing is not None:
        layer['ROUTING'] = routing
    return {'default': layer}


def ids(problems):
    return [problem.id for problem in problems]


def only(problems, check_id):
    found = [problem for problem in problems if problem.id == check_id]
    assert len(found) == 1, problems
    return found[0]


def test_the_checks_are_registered_and_the_test_settings_only_warn_about_memory():
    # tests/settings.py silences this warning for commands; run_checks() still reports it.
    problems = checks.run_checks(tags=['sisy'])
    assert ids(problems) == ['sisy.W001']


@override_settings(CHANNEL_LAYERS=layers())
def test_a_good_setup_passes():
    assert sisy_checks.check_channel_layer() == []
    assert sisy_checks.check_settings() == []
    assert sisy_checks.check_time_zone_support() == []


@override_settings(CHANNEL_LAYERS=layers(backend=MEMORY))
def test_in_memory_layer_is_a_warning():
    warning = only(sisy_checks.check_channel_layer(), 'sisy.W001')
    assert isinstance(warning, checks.Warning)
    assert MEMORY in warning.msg and 'asgi_redis.RedisChannelLayer' in warning.hint


@override_settings(CHANNEL_LAYERS=layers('tests.test_checks.no_sisy_routing'))
def test_routing_without_sisy_is_an_error_per_channel():
    problems = sisy_checks.check_channel_layer()
    assert ids(problems) == ['sisy.E001'] * 3
    assert "'sisy.run_task' (SISY_RUN_TASK_CHANNEL) is not routed" in problems[1].msg
    assert "include('sisy.routing.channel_routing')" in problems[1].hint


@override_settings(CHANNEL_LAYERS=layers('tests.test_checks.hijacked_routing'))
def test_a_sisy_channel_routed_elsewhere_is_an_error():
    error = only(sisy_checks.check_channel_layer(), 'sisy.E001')
    assert "'sisy.run_task'" in error.msg and 'not to sisy.consumers.run_task' in error.msg


@override_settings(CHANNEL_LAYERS=layers(), SISY_RUN_TASK_CHANNEL='jobs.run')
def test_a_renamed_channel_that_the_routes_do_not_know_is_an_error():
    # sisy.routing read the channel names when it was imported.
    error = only(sisy_checks.check_channel_layer(), 'sisy.E001')
    assert "'jobs.run' (SISY_RUN_TASK_CHANNEL)" in error.msg


@pytest.mark.parametrize('channel_layers, message', [
    ({}, 'no "default" layer'),
    (layers(routing=None), 'has no ROUTING'),
    (layers('tests.nowhere.routing'), "'tests.nowhere.routing' cannot be loaded"),
])
def test_missing_layer_or_routing_is_an_error(channel_layers, message):
    with override_settings(CHANNEL_LAYERS=channel_layers):
        error = only(sisy_checks.check_channel_layer(), 'sisy.E002')
    assert message in error.msg


def test_the_missing_layer_hint_gives_the_site_a_prefix():
    with override_settings(CHANNEL_LAYERS={}):
        error = only(sisy_checks.check_channel_layer(), 'sisy.E002')
    assert "'CONFIG': {'prefix': 'myproject'}" in error.hint
    assert 'sites on one machine do not share channels' in error.hint


@pytest.mark.parametrize('value', [0, -5, 'sixty', True, None])
def test_heartbeat_frequency_must_be_a_positive_number(value):
    with override_settings(SISY_HEARTBEAT_FREQUENCY=value):
        error = only(sisy_checks.check_settings(), 'sisy.E003')
    assert 'SISY_HEARTBEAT_FREQUENCY=%r is not a positive number' % (value,) in error.msg


@override_settings(SISY_HEARTBEAT_FREQUENCY=7.5)
def test_a_fractional_frequency_is_fine():
    assert sisy_checks.check_settings() == []


@override_settings(SISY_DEFAULT_SCHEDULE='every day')
def test_default_schedule_must_be_valid():
    error = only(sisy_checks.check_settings(), 'sisy.E004')
    assert "'every day' has 2 fields" in error.msg and "'* * * * *'" in error.hint


@pytest.mark.parametrize('name, value, message', [
    ('SISY_RUN_TASK_CHANNEL', 'run task', "SISY_RUN_TASK_CHANNEL='run task' is not a valid"),
    ('SISY_HEARTBEAT_CHANNEL', 'beat!', "SISY_HEARTBEAT_CHANNEL='beat!' is not a valid"),
    ('SISY_KILL_TASK_CHANNEL', 'x' * 100, 'is not a valid channel name'),
    ('SISY_KILL_TASK_CHANNEL', 'sisy.run_task', 'SISY_RUN_TASK_CHANNEL and SISY_KILL_TASK_CHANNEL'
                                                " are both 'sisy.run_task'"),
])
def test_channel_names_must_be_valid_and_distinct(name, value, message):
    with override_settings(**{name: value}):
        error = only(sisy_checks.check_settings(), 'sisy.E005')
    assert message in error.msg


@pytest.mark.parametrize('value, ok', [(30, True), (None, True), (0.5, True), (-1, False),
                                       ('30', False)])
def test_run_history_days(value, ok):
    with override_settings(SISY_RUN_HISTORY_DAYS=value):
        problems = sisy_checks.check_settings()
    assert ids(problems) == ([] if ok else ['sisy.E006'])


@override_settings(USE_TZ=False)
def test_use_tz_off_is_an_error():
    error = only(sisy_checks.check_time_zone_support(), 'sisy.E007')
    assert 'USE_TZ is False' in error.msg and 'USE_TZ = True' in error.hint


@pytest.mark.parametrize('value, ok', [(None, True), (300, True), (0.5, True), (0, False),
                                       (-5, False), ('300', False), (float('inf'), False),
                                       (365 * 24 * 3600, True), (1e12, False)])
def test_default_timeout(value, ok):
    with override_settings(SISY_DEFAULT_TIMEOUT=value):
        problems = sisy_checks.check_settings()
    assert ids(problems) == ([] if ok else ['sisy.E008'])


def test_a_queue_whose_run_channel_would_be_too_long_is_named(settings):
    settings.SISY_RUN_TASK_CHANNEL = 'r' * 60
    settings.SISY_QUEUES = ['default', 'q' * 45]
    errors = [error for error in sisy_checks.check_settings() if error.id == "sisy.E011"]
    assert len(errors) == 1 and 'r' * 60 + '.' + 'q' * 45 in errors[0].msg
