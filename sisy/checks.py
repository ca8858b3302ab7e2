"""System checks for mistakes that would keep Sisy's tasks from running.

Registered by SisyConfig.ready(); `manage.py check` shows them. Each message
names the value at fault, and the hint says what to do instead.
"""

import numbers
import re

from django.conf import settings
from django.core import checks

from sisy.conf import setting
from sisy.validation import DEFAULT_QUEUE, MAX_SECONDS, QUEUE_NAME
from sisy.schedule import InvalidSchedule, Schedule

CHANNEL_SETTINGS = (
    # setting, the consumer that must receive that channel
    ('SISY_HEARTBEAT_CHANNEL', 'heartbeat'),
    ('SISY_RUN_TASK_CHANNEL', 'run_task'),
    ('SISY_KILL_TASK_CHANNEL', 'kill_task'),
)
# Channels 1.x names; '!' and '?' mark process-local channels no worker pool can share.
CHANNEL_NAME = re.compile(r'^[a-zA-Z0-9_.-]{1,99}$')
IN_MEMORY_LAYER = 'asgiref.inmemory.ChannelLayer'
INCLUDE_HINT = ("Add include('sisy.routing.channel_routing') to the routing list named by "
                "CHANNEL_LAYERS['default']['ROUTING'].")


def check_time_zone_support(app_configs=None, **kwargs):
    """Schedules are local time turned into aware instants, so USE_TZ must be on."""
    if getattr(settings, 'USE_TZ', False):
        return []
    return [checks.Error(
        'USE_TZ is %r; Sisy needs aware datetimes to read schedules in TIME_ZONE (%s) '
        'and store run times.' % (getattr(settings, 'USE_TZ', None), settings.TIME_ZONE),
        hint='Set USE_TZ = True in your settings.', id='sisy.E007')]


def check_settings(app_configs=None, **kwargs):
    """Every SISY_* setting has a usable value."""
    errors = []
    frequency = setting('SISY_HEARTBEAT_FREQUENCY')
    if not _is_number(frequency) or frequency <= 0:
        errors.append(checks.Error(
            'SISY_HEARTBEAT_FREQUENCY=%r is not a positive number of seconds.' % (frequency,),
            hint='Set it to the seconds between heartbeat ticks, e.g. 60 (the default); no '
                 'task runs more often than this.', id='sisy.E003'))
    default = setting('SISY_DEFAULT_SCHEDULE')
    try:
        Schedule(default)
    except InvalidSchedule as error:
        errors.append(checks.Error(
            'SISY_DEFAULT_SCHEDULE is not a valid schedule: %s' % error,
            hint="Use a cron expression such as '* * * * *' (the default) or '30 0 * * *'.",
            id='sisy.E004'))
    names = {}
    for name, _ in CHANNEL_SETTINGS:
        value = setting(name)
        if not isinstance(value, str) or not CHANNEL_NAME.match(value):
            errors.append(checks.Error(
                '%s=%r is not a valid channel name.' % (name, value),
                hint="Use ASCII letters, digits, '-', '_' and '.', under 100 characters, "
                     "e.g. 'sisy.run_task'.", id='sisy.E005'))
        elif value in names:
            errors.append(checks.Error(
                '%s and %s are both %r; each Sisy channel needs its own name.'
                % (names[value], name, value),
                hint='Give them different names, e.g. the defaults sisy.heartbeat, '
                     'sisy.run_task and sisy.kill_task.', id='sisy.E005'))
        else:
            names[value] = name
    days = setting('SISY_RUN_HISTORY_DAYS')
    if days is not None and (not _is_number(days) or days < 0):
        errors.append(checks.Error(
            'SISY_RUN_HISTORY_DAYS=%r is not a number of days.' % (days,),
            hint='Use a number such as 30 (the default) to keep that many days of run '
                 'history, or None to keep it all.', id='sisy.E006'))
    timeout = setting('SISY_DEFAULT_TIMEOUT')
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= MAX_SECONDS):
        errors.append(checks.Error(
            'SISY_DEFAULT_TIMEOUT=%r is not a positive number of seconds, at most %d '
            '(365 days), or None.' % (timeout, MAX_SECONDS),
            hint='Use the seconds a run may take before it is interrupted, e.g. 300, or None '
                 '(the default) for no limit.', id='sisy.E008'))
    eager = setting('SISY_ALWAYS_EAGER')
    if not isinstance(eager, bool):
        errors.append(checks.Error(
            'SISY_ALWAYS_EAGER=%r is not True or False.' % (eager,),
            hint='Set it to True in test settings to run one-off tasks at once in the '
                 'calling process, or leave it out (False).', id='sisy.E009'))
    return errors + _check_metrics_settings() + _check_queues()


def _check_queues():
    queues = setting('SISY_QUEUES')
    names = list(queues) if isinstance(queues, (list, tuple)) else None
    if names is None or DEFAULT_QUEUE not in names or not all(
            isinstance(name, str) and QUEUE_NAME.match(name) for name in names):
        return [checks.Error(
            'SISY_QUEUES=%r is not a list of queue names that includes %r.'
            % (queues, DEFAULT_QUEUE),
            hint="List the queues runs may wait in, 'default' first, e.g. ['default', "
                 "'emails']; a name has 1 to 50 letters, digits, '_' or '-'.",
            id='sisy.E011')]
    base = setting('SISY_RUN_TASK_CHANNEL')
    from sisy.doorbells import channel_for
    too_long = [channel_for(name) for name in names if isinstance(base, str)
                and not CHANNEL_NAME.match(channel_for(name))]
    if too_long:
        return [checks.Error(
            'The run channels of these queues are longer than 99 characters: %s.'
            % ', '.join(too_long),
            hint='Shorten the queue names or SISY_RUN_TASK_CHANNEL.', id='sisy.E011')]
    return []


def _check_metrics_settings():
    errors = []
    token = setting('SISY_METRICS_TOKEN')
    if token is not None and (not isinstance(token, str) or not token.strip()
                              or token != token.strip()):
        errors.append(checks.Error(
            'SISY_METRICS_TOKEN=%r is not a usable bearer token.' % (token,),
            hint="Use a long random string with no spaces at either end, e.g. from python -c "
                 "'import secrets; print(secrets.token_urlsafe())', or None (the default) to "
                 "allow staff sessions only.", id='sisy.E010'))
    limit = setting('SISY_METRICS_TASK_LIMIT')
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        errors.append(checks.Error(
            'SISY_METRICS_TASK_LIMIT=%r is not a whole number of task labels.' % (limit,),
            hint='Use 0 or more, e.g. 1000 (the default).', id='sisy.E010'))
    return errors


def check_channel_layer(app_configs=None, **kwargs):
    """The default channel layer routes Sisy's channels to Sisy and reaches other processes."""
    layers = getattr(settings, 'CHANNEL_LAYERS', None) or {}
    layer = layers.get('default')
    if not layer:
        return [checks.Error(
            'CHANNEL_LAYERS has no "default" layer, so Sisy cannot send or receive messages.',
            hint="Configure one, e.g. {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', "
                 "'ROUTING': 'myproject.routing.channel_routing', "
                 "'CONFIG': {'prefix': 'myproject'}}}, with a prefix of this site's own so "
                 "that sites on one machine do not share channels.", id='sisy.E002')]
    problems = []
    if layer.get('BACKEND') == IN_MEMORY_LAYER:
        problems.append(checks.Warning(
            "CHANNEL_LAYERS['default'] uses %s, which lives inside one process: the "
            "sisy_heartbeat command and your workers cannot reach each other through it."
            % IN_MEMORY_LAYER,
            hint="Use 'asgi_ipc.IPCChannelLayer' on one machine, or "
                 "'asgi_redis.RedisChannelLayer' across machines.", id='sisy.W001'))
    return problems + _check_routing(layer.get('ROUTING'))


def _check_routing(routing):
    from django.core.exceptions import ImproperlyConfigured
    from channels.routing import Router

    if not routing:
        return [checks.Error("CHANNEL_LAYERS['default'] has no ROUTING, so no worker runs "
                             "Sisy's consumers.", hint=INCLUDE_HINT, id='sisy.E002')]
    try:
        router = Router(routing)
    except (ImproperlyConfigured, ImportError, ValueError) as error:
        return [checks.Error("CHANNEL_LAYERS['default']['ROUTING']=%r cannot be loaded: %s"
                             % (routing, error), hint=INCLUDE_HINT, id='sisy.E002')]
    from sisy import consumers
    errors = []
    for name, consumer_name, channel in _routed_channels():
        if not isinstance(channel, str) or not CHANNEL_NAME.match(channel):
            continue  # reported by check_settings
        expected = getattr(consumers, consumer_name)
        found = router.match(_Probe(channel))
        if found is None:
            errors.append(checks.Error(
                'Channel %r (%s) is not routed in %r, so nothing handles Sisy\'s %s '
                'messages.' % (channel, name, routing, consumer_name.replace('_', ' ')),
                hint=INCLUDE_HINT + ' If you changed %s after sisy.routing was imported, '
                     'routes use the old name.' % name, id='sisy.E001'))
        elif found[0] is not expected:
            errors.append(checks.Error(
                'Channel %r (%s) is routed to %r in %r, not to sisy.consumers.%s.'
                % (channel, name, found[0], routing, consumer_name),
                hint='Route it to Sisy, or give %s a name no other route uses.' % name,
                id='sisy.E001'))
    return errors


def _routed_channels():
    """(setting, consumer, channel) of every channel Sisy needs routed: one run channel per queue."""
    from sisy.doorbells import channel_for
    channels = [(name, consumer, setting(name)) for name, consumer in CHANNEL_SETTINGS]
    queues = setting('SISY_QUEUES')
    if isinstance(queues, (list, tuple)) and isinstance(setting('SISY_RUN_TASK_CHANNEL'), str):
        channels += [('SISY_QUEUES (queue %r)' % queue, 'run_task', channel_for(queue))
                     for queue in queues if isinstance(queue, str) and queue != DEFAULT_QUEUE
                     and QUEUE_NAME.match(queue)]
    return channels


class _Probe(dict):
    """Just enough of a channels Message for Router.match(), without a channel layer."""

    def __init__(self, channel_name):
        super().__init__()
        self.channel = type('ProbeChannel', (), {'name': channel_name})()

    def copy(self):
        return _Probe(self.channel.name)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
