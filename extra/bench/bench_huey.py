"""Huey's side of the throughput and hand-off benchmarks: a RedisHuey and no-op tasks.

The consumer (``huey_consumer bench_huey.huey -k process -w 2``) and the
benchmark import this module with SISY_BENCH_HUEY_NAME set to a name of their
own, so the queue's keys (``huey.*.<name>``) and the list of executions
(``sisybench.done.<name>``) are theirs alone. SISY_BENCH_REDIS_PORT, if set,
is the Redis port (default 6379).
"""

import os
import time

import redis
from huey import RedisHuey

from stamplog import note

NAME = os.environ.get('SISY_BENCH_HUEY_NAME', 'sisybench')
REDIS = {'host': '127.0.0.1', 'port': int(os.environ.get('SISY_BENCH_REDIS_PORT', 6379))}
DONE_KEY = 'sisybench.done.%s' % NAME

huey = RedisHuey(NAME, **REDIS)
_client = None


@huey.task()
def noop(number):
    """Do nothing but append "<number> <epoch seconds>" to the list of executions."""
    global _client
    if _client is None:
        _client = redis.StrictRedis(**REDIS)
    _client.rpush(DONE_KEY, '%d %.6f' % (number, time.time()))


@huey.task()
def stamp(key):
    """Note "<key> <epoch seconds>" as the function starts (handoff.py)."""
    note(key)
