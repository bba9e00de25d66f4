"""The broker's sockets, described once: what each is called, where it listens and how it is counted.

A socket's *role* names it everywhere: the :class:`~broker.config.BrokerConfig`
field (hence its flag ``--pub-ingest`` and its variable
``LOGFABRIC_BROKER_PUB_INGEST``), the key of ``Broker.endpoints``, the socket
monitor's name, the ``socket`` label of the metrics and the ZAP domain
``logfabric.<role>``. Its *proxy* is the ``zmq.proxy_steerable`` that forwards
its records (the key of ``Broker.statistics()``); its *flow* is the label of
``logfabric_broker_records_received{ingest}`` or ``..._records_sent{egress}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import zmq

__all__ = [
    "BOUND",
    "CONTROL",
    "EGRESS",
    "HISTORY",
    "INGESTS",
    "OUTPUTS",
    "PIPELINE",
    "SERVED",
    "SOCKETS",
    "Socket",
    "socket_of",
]


@dataclass(frozen=True)
class Socket:
    """One of the broker's sockets, facing producers, subscribers or other brokers."""

    role: str
    """Config field, ``endpoints`` key, metric ``socket`` label, ZAP domain suffix."""
    proxy: str
    """The proxy that forwards its records: frontend of an ingest's, backend of an output's."""
    side: Literal["ingest", "output", "query", "control"]
    """Whether records come in (ingests) or go out (outputs) through it, it answers queries (history),
    or it carries level changes (control)."""
    kind: int
    """Its ZeroMQ socket type."""
    bound: bool
    """Whether it binds (and so has a ZAP domain, connection caps and CURVE server keys) or connects."""
    peers: Literal["producers", "subscribers", "brokers", "operators"]
    """Who is at the other end; a bound socket checks CURVE clients against that allow-list."""
    flow: str
    """Label of ``records_received{ingest}`` (ingests) or ``records_sent{egress}`` (outputs)."""
    default: str | None
    """The endpoint it binds unless configured; None: off unless configured."""
    help: str
    """What the ``--<role>`` flag says (``{default}`` becomes the default)."""
    bridge: int | None = None
    """An ingest's in-process socket type between its proxy and the outputs."""

    @property
    def domain(self) -> str:
        """The ZAP domain of a bound socket."""
        return f"logfabric.{self.role}"

    @property
    def field(self) -> str:
        """The :class:`~broker.config.BrokerConfig` field that sets its endpoint(s)."""
        return self.role


#: In this order: ingests first, then outputs (the order proxies stop in, and metrics are listed in).
SOCKETS: tuple[Socket, ...] = (
    Socket(
        role="pub_ingest",
        proxy="pub",
        side="ingest",
        kind=zmq.XSUB,
        bound=True,
        peers="producers",
        flow="pub",
        default="tcp://*:5556",
        help="XSUB endpoint for PUB producers (default {default})",
        bridge=zmq.XPUB,
    ),
    Socket(
        role="push_ingest",
        proxy="push",
        side="ingest",
        kind=zmq.PULL,
        bound=True,
        peers="producers",
        flow="push",
        default="tcp://*:5557",
        help="PULL endpoint for PUSH producers (default {default})",
        bridge=zmq.PUB,
    ),
    Socket(
        role="upstream",
        proxy="upstream",
        side="ingest",
        kind=zmq.XSUB,
        bound=False,
        peers="brokers",
        flow="upstream",
        default=None,
        help="another broker's egress to subscribe to (repeatable)",
        bridge=zmq.XPUB,
    ),
    Socket(
        role="egress",
        proxy="egress",
        side="output",
        kind=zmq.XPUB,
        bound=True,
        peers="subscribers",
        flow="subscribers",
        default="tcp://*:5558",
        help="XPUB endpoint for subscribers (default {default})",
    ),
    Socket(
        role="pipeline",
        proxy="pipeline",
        side="output",
        kind=zmq.PUSH,
        bound=True,
        peers="subscribers",
        flow="pipeline",
        default=None,
        help="PUSH endpoint load-balancing every record over consumers (default off)",
    ),
    Socket(
        role="history",
        proxy="history",
        side="query",
        kind=zmq.ROUTER,
        bound=True,
        peers="subscribers",
        flow="history",
        default=None,
        help="ROUTER endpoint answering history queries over the record store, e.g. tcp://*:5559 "
        "(default off; needs --store)",
    ),
    Socket(
        role="control",
        proxy="control",
        side="control",
        kind=zmq.ROUTER,
        bound=True,
        peers="operators",
        flow="control",
        default=None,
        help="ROUTER endpoint for runtime level changes ('logfabric level'), e.g. tcp://*:5560 (default off; "
        "needs --curve-operators, or --control-trust-network without CurveZMQ)",
    ),
)

INGESTS = tuple(s for s in SOCKETS if s.side == "ingest")
OUTPUTS = tuple(s for s in SOCKETS if s.side == "output")
#: The bound sockets that carry records, in the order of :data:`SOCKETS`.
BOUND = tuple(s for s in SOCKETS if s.bound and s.side in ("ingest", "output"))
#: Every bound socket: those that carry records, then the history and control endpoints (no proxy: a thread each).
SERVED = tuple(s for s in SOCKETS if s.bound)

_BY_ROLE = {s.role: s for s in SOCKETS}


def socket_of(role: str) -> Socket:
    """The socket called ``role`` (KeyError for a name that is none)."""
    return _BY_ROLE[role]


#: Where subscribers subscribe: the subscription budget and the penalty box guard it.
EGRESS = socket_of("egress")
#: The optional output that load-balances every record over consumers.
PIPELINE = socket_of("pipeline")
#: The optional endpoint that answers history queries (broker._history).
HISTORY = socket_of("history")
#: The optional endpoint that carries level changes from operators to producers (broker._control).
CONTROL = socket_of("control")
