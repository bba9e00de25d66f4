"""Room in a handler's queue: its bounds, and what a logging call does when they are reached.

The common case (room to spare) is tested inline by :meth:`fabric.ZmqHandler.enqueue`;
this is the rest: starting the sender, dropping the oldest records while a pub
handler waits for its first subscriber, and waiting up to ``send_timeout`` for
the sender to make room, with the handler's lock released.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from fabric._sender import Sender

__all__ = ["has_room", "make_room"]

#: Seconds between looks for room in a full queue, for a call that may wait (send_timeout).
NAP = 0.001


class _Queueing(Protocol):
    hwm: int
    buffer_bytes: int
    lock: threading.RLock | None
    _sender: Sender
    _put_bytes: int
    _counts: dict[str, int]

    def _revive(self) -> bool: ...


def has_room(handler: _Queueing, size: int) -> bool:
    """Whether the queue takes one more message of ``size`` bytes: fewer than ``hwm`` records and ``buffer_bytes``."""
    sender = handler._sender
    return len(sender.queue) < handler.hwm and handler._put_bytes - sender.taken_bytes + size <= handler.buffer_bytes


def make_room(handler: _Queueing, size: int, wait: float) -> bool:
    """Whether a message of about ``size`` bytes may be queued: start the sender, make or wait for room.

    While a pub handler waits for its first subscriber the oldest queued
    records are dropped (counted) to make room; otherwise a call waits up to
    ``wait`` seconds (``send_timeout``) with the handler's lock released, so
    other threads' calls wait alongside rather than behind it.
    """
    if not handler._revive():
        return False
    if has_room(handler, size):
        return True
    queue = handler._sender.queue
    if not handler._sender.ready:  # waiting for a first subscriber: the newest records are kept
        while queue and not has_room(handler, size):
            try:
                handler._put_bytes -= len(queue.popleft())
            except IndexError:  # the sender took it meanwhile
                break
            handler._counts["dropped"] += 1
        return has_room(handler, size)
    if wait <= 0:
        return False
    deadline = time.monotonic() + wait
    lock = handler.lock
    try:
        if lock is not None:
            lock.release()
    except RuntimeError:  # emit() called without the lock: nothing to let go
        lock = None
    try:
        while not has_room(handler, size) and time.monotonic() < deadline:
            time.sleep(NAP)
    finally:
        if lock is not None:
            lock.acquire()
    return has_room(handler, size)
