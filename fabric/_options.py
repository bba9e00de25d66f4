"""What a ZmqHandler checks and derives from its options: the endpoint, limits, service name and producer id."""

from __future__ import annotations

import os
import sys

from fabric import _sockets
from fabric.codec import CODECS

__all__ = ["check", "default_service", "new_producer_id"]


def default_service() -> str:
    """The service name used when none is given: ``$LOGFABRIC_SERVICE`` or the program name."""
    env = os.environ.get("LOGFABRIC_SERVICE")
    if env:
        return env
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog.endswith(".py"):
        prog = prog[:-3]
    return prog or "python"


def new_producer_id() -> int:
    """A fresh random producer id."""
    # From the OS, not from `random`: a child made by a bare fork() (no at-fork
    # hooks, so `random` is not reseeded) must not draw its parent's next id.
    return int.from_bytes(os.urandom(8), "big")


def check(
    queue_or_endpoint: object,
    endpoint: str | None,
    *,
    mode: str,
    codec: str,
    send_timeout: float,
    linger: float,
    hwm: int,
    buffer_bytes: int,
) -> str:
    """Raise ``ValueError`` for a bad option; return the endpoint to use."""
    # Python 3.12+ dictConfig builds QueueHandler subclasses as
    # klass(queue, **config): the endpoint then arrives by keyword and the
    # positional queue is not ours to use.
    if endpoint is None and isinstance(queue_or_endpoint, str):
        endpoint = queue_or_endpoint
    if endpoint is None:
        given = "" if queue_or_endpoint is None else f", got {type(queue_or_endpoint).__name__}"
        raise ValueError(f"ZmqHandler needs one endpoint string, e.g. ZmqHandler('tcp://127.0.0.1:5557'){given}")
    endpoint = _sockets.check_endpoint(endpoint)
    if mode not in ("push", "pub"):
        raise ValueError(f"unknown mode {mode!r}: use 'push' or 'pub'")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
    if send_timeout < 0 or linger < 0 or hwm < 0:
        raise ValueError("send_timeout, linger and hwm must not be negative")
    if hwm == 0:
        raise ValueError(
            "hwm=0 would let the queue grow without limit (0 means 'no limit' to ZeroMQ); "
            f"give the number of records to queue per peer, e.g. the default {_sockets.DEFAULT_HWM}"
        )
    if buffer_bytes <= 0:
        raise ValueError(f"buffer_bytes must be positive, e.g. the default {_sockets.DEFAULT_BUFFER_BYTES}")
    return endpoint
