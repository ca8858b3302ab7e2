"""The benchmarks' stamp log: functions note when they start with one file append.

The log is SISY_BENCH_EXEC_LOG.<pid>, one per process; no database or Redis
write, so what is noted is when the function started, whatever the systems
under test record afterwards.
"""

import os
import time

_log_fd = None


def note(key):
    """Append "<key> <epoch seconds>" to this process's stamp log; call it first thing."""
    global _log_fd
    at = time.time()
    if _log_fd is None:
        _log_fd = os.open('%s.%d' % (os.environ['SISY_BENCH_EXEC_LOG'], os.getpid()),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_log_fd, ('%s %.6f\n' % (key, at)).encode())
