"""The shutdown drain: forward in Python what still arrives once the proxies have ended."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import NamedTuple

import zmq

from broker._roles import INGESTS, OUTPUTS
from broker.proxy import Proxy

__all__ = ["Drained", "drain"]

#: The ingests count as quiet once nothing arrived for this long.
QUIET_SECONDS = 0.3
#: Messages the drain takes from one socket before it looks at the clock again:
#: a peer that never stops sending must not keep the broker past its deadline.
_BATCH = 1000


class Drained(NamedTuple):
    """What a drain did."""

    records: int
    """Records forwarded."""
    dropped: int
    """Messages a full output queue refused (those subscribers see a gap)."""
    why: str
    """Why it ended: the ingests were quiet, or the deadline came."""


def drain(proxies: Mapping[str, Proxy], deadline: float) -> Drained:
    """Forward what arrives at the ingests of ended ``proxies`` until they stay quiet or ``deadline`` nears.

    A quarter of the time left (at most 1 s) is kept back for the outputs'
    queues to leave.
    """
    outputs = [proxies[o.proxy] for o in OUTPUTS if o.proxy in proxies]
    # (source, destinations): ingests go to every output; bridge leftovers
    # were already fanned out, so each output's own XSUB feeds only it.
    routes: list[tuple[zmq.Socket[bytes], list[zmq.Socket[bytes]]]] = [
        (proxies[i.proxy].frontend, [o.backend for o in outputs]) for i in INGESTS if i.proxy in proxies
    ]
    routes += [(o.frontend, [o.backend]) for o in outputs]
    # Subscriptions arriving at an XPUB output: read and ignore.
    chatty = [proxies[o.proxy].backend for o in OUTPUTS if o.proxy in proxies and o.kind == zmq.XPUB]
    poller = zmq.Poller()
    for source in [s for s, _ in routes] + chatty:
        poller.register(source, zmq.POLLIN)
    reserve = min(1.0, max(0.0, (deadline - time.monotonic()) / 4))
    records = dropped = 0
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline - reserve:
            return Drained(records, dropped, "drain timeout reached")
        if now - quiet_since >= QUIET_SECONDS:
            return Drained(records, dropped, "ingests quiet")
        events = dict(poller.poll(50))
        if not events:
            continue
        for sock in chatty:
            if sock in events:
                for _ in range(_BATCH):
                    if _recv_nowait(sock) is None:
                        break
        for source, destinations in routes:
            if source not in events:
                continue
            for _ in range(_BATCH):
                if (message := _recv_nowait(source)) is None:
                    break
                records += 1
                for out in destinations:
                    try:
                        out.send_multipart(message, zmq.NOBLOCK)
                    except zmq.Again:  # a full subscriber queue: the subscriber sees a gap
                        dropped += 1
                quiet_since = time.monotonic()


def _recv_nowait(sock: zmq.Socket[bytes]) -> list[bytes] | None:
    try:
        return sock.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
