"""What Sisy does with errors: tell a passing outage from a permanent failure, and store texts.

Code that retries (recording runs, the watchdog, the heartbeat's consumers)
retries only what can pass by itself: a lost connection, a lock timeout, a
deadlock. A permanent error (an integrity or data error, a programming error,
a value Python cannot compute with) fails the same way each time, so it is
recorded and skipped instead of retried.
"""

from django.db import InterfaceError, OperationalError


def is_outage(error):
    """Whether `error` can pass by itself (the database away or busy), so retrying may help."""
    return isinstance(error, (OperationalError, InterfaceError))


def first_line(error):
    """The first line of an error's message (at most 200 characters), for one-line logs."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def storable_text(text):
    """`text` as any database can store it: undecodable characters escaped, NUL removed.

    A file name read with the file system's encoding can hold lone surrogates
    (os.fsdecode of non-UTF-8 bytes); they come back as the bytes they stood
    for, written as escapes ('\\xff'). PostgreSQL's text columns refuse NUL.
    """
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        try:
            text = text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')
        except UnicodeEncodeError:  # surrogates that no byte stands for
            text = text.encode('utf-8', 'backslashreplace').decode('utf-8')
    return text.replace('\x00', '')
