"""Bounded waits: every wait in the tests ends, so a broken fabric fails a test instead of hanging it.

Nothing here sleeps for its own sake: each loop polls a condition (or paces
what it sends) and gives up at a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def poll_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """:func:`wait_until` for what another process answers (HTTP, ``/proc``, a broker): 10 s, every 20 ms."""
    return wait_until(predicate, timeout, interval)


def wait_quiet(measure: Callable[[], object], quiet: float = 0.5, timeout: float = 15.0) -> bool:
    """Wait (bounded) until ``measure()`` has not changed for ``quiet`` seconds; return whether it settled."""
    deadline = time.monotonic() + timeout
    last = measure()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = measure()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def send_until(send: Callable[[int], object], arrived: Callable[[], object], timeout: float = 10.0) -> int | None:
    """Call ``send(0)``, ``send(1)``, ... until ``arrived()`` holds; return how many were sent (None at timeout).

    After each send ``arrived()`` is polled for 0.1 s. This is how a test knows
    that subscriptions have travelled all the way to a publisher before it
    starts counting.
    """
    deadline = time.monotonic() + timeout
    sent = 0
    while True:
        send(sent)
        sent += 1
        if wait_until(arrived, timeout=0.1, interval=0.01):
            return sent
        if time.monotonic() > deadline:
            return None


def stream_until(
    emit: Callable[[int], object], done: Callable[[], object], timeout: float = 15.0, interval: float = 0.01
) -> int:
    """Call ``emit(0)``, ``emit(1)``, ... one every ``interval`` s until ``done()`` or the timeout; return the count.

    The caller checks ``done()`` afterwards: the stream also ends at the
    timeout. Unlike :func:`send_until` this keeps a steady stream going, for a
    consumer that must see consecutive records.
    """
    deadline = time.monotonic() + timeout
    sent = 0
    while not done() and time.monotonic() < deadline:
        emit(sent)
        sent += 1
        time.sleep(interval)
    return sent
