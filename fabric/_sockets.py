"""Socket options shared by producers and subscribers, and endpoint checks."""

from __future__ import annotations

import zmq

from fabric.topic import MAX_TOPIC

#: Default high-water mark: room for a 10,000-record burst with margin.
DEFAULT_HWM = 50_000
#: Default largest message a socket accepts (libzmq drops larger ones and resets).
DEFAULT_MAX_MESSAGE = 1024 * 1024
#: Default bytes a connecting producer hands to libzmq while its peer is away
#: (libzmq queues them for it); records beyond are dropped and counted.
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024

#: Largest message a producer accepts from a peer: a subscription to the longest
#: topic as a ZMTP 3.1 SUBSCRIBE command (a length byte and "SUBSCRIBE" before
#: the topic). Nothing larger is legitimate (a PUSH socket's peers send nothing
#: but commands), and libzmq drops the connection of a peer that sends more.
MAX_SUBSCRIPTION = MAX_TOPIC + 10
#: Messages a producer's socket lets wait from one peer before libzmq stops
#: reading that peer (TCP back-pressure): bounds what a peer can park in the
#: application between two reads of the socket. Subscriptions only wait, none
#: is lost.
UPSTREAM_HWM = 16
#: What a pub producer lets its subscriptions cost: libzmq's subscription trie
#: takes about 85 bytes of memory per distinct subscription byte. Counted as
#: the topic's length plus :data:`SUBSCRIPTION_OVERHEAD` per distinct topic;
#: past it the socket is closed and opened again (subscribers reconnect and
#: subscribe again), so a flood of distinct subscriptions costs at most about
#: 20 MiB.
SUBSCRIPTION_BUDGET = 256 * 1024
#: The weight of one distinct topic in :data:`SUBSCRIPTION_BUDGET` beyond its bytes.
SUBSCRIPTION_OVERHEAD = 64

_SCHEMES = ("tcp://", "ipc://", "inproc://", "pgm://", "epgm://", "vmci://", "udp://")


def check_endpoint(endpoint: object) -> str:
    """Return ``endpoint`` if it looks like a ZeroMQ endpoint, else raise ValueError."""
    if not isinstance(endpoint, str) or not endpoint.startswith(_SCHEMES) or endpoint[-3:] == "://":
        raise ValueError(
            f"invalid endpoint {endpoint!r}: expected a ZeroMQ address such as "
            "'tcp://127.0.0.1:5557', 'ipc:///tmp/logs.sock' or 'inproc://logs'"
        )
    return endpoint


def endpoint_list(endpoints: str | list[str] | tuple[str, ...]) -> list[str]:
    """Normalise one endpoint or a sequence of them to a list (checked where used)."""
    return [endpoints] if isinstance(endpoints, str) else list(endpoints)


def attach(sock: zmq.Socket[bytes], endpoint: str, bind: bool) -> None:
    """Bind or connect ``sock``, turning zmq's terse errors into actionable ones."""
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        verb = "bind to" if bind else "connect to"
        raise ValueError(f"cannot {verb} {endpoint!r}: {exc.strerror}") from exc


def tune(sock: zmq.Socket[bytes]) -> None:
    """Set reconnect and heartbeat options so a dead peer is noticed in seconds."""
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3000)
