"""Huey's side of the throughput benchmark: a RedisHuey and a no-op task.

The consumer (``huey_consumer bench_huey.huey -k process -w 2``) and the
benchmark import this module with SISY_BENCH_HUEY_NAME set to a name of their
own, so the queue's keys (``huey.*.<name>``) and the list of executions
(``sisybench.done.<name>``) are theirs alone.
"""

import os
import time

import redis
from huey import RedisHuey

NAME = os.environ.get('SISY_BENCH_HUEY_NAME', 'sisybench')
REDIS = {'host': '127.0.0.1', 'port': 6379}
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
