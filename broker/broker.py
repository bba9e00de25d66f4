"""The broker: ingests, bridges and egress wired through zmq proxy devices.

::

    PUB producers  -> pub ingest (XSUB)  =proxy=> bridge (XPUB) -+
    PUSH producers -> push ingest (PULL) =proxy=> bridge (PUB)  -+-> central (XSUB) =proxy=> egress (XPUB)
    other brokers  -> upstream (XSUB)    =proxy=> bridge (XPUB) -+      -> subscribers
                                                                 +-> pipeline in (XSUB, everything)
                                                                        =proxy=> pipeline (PUSH) -> consumers

Every arrow marked ``=proxy=>`` is a ``zmq.proxy_steerable`` running in C;
Python only asks the proxies for their counters. Subscriptions flow the other
way, from the egress through the bridges to PUB producers and upstream brokers,
so records nobody wants are not sent at all. Each ingest has its own proxy so
its counters are exact; the bridges are in-process (``inproc://``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from types import TracebackType
from typing import Any

import zmq

from broker._connections import ConnectionLimits
from broker._control import ControlServer
from broker._control import tune_socket as tune_control
from broker._drain import drain
from broker._errors import ConfigError
from broker._history import HistoryServer, tune_socket
from broker._roles import CONTROL, EGRESS, HISTORY, INGESTS, OUTPUTS, PIPELINE, SOCKETS, Socket, socket_of
from broker._store import Store
from broker._store_feed import StoreFeed
from broker._subscriptions import PenaltyBox, SubscriptionWatch
from broker.auth import BrokerAuth, monitor_hook, upstream_keys
from broker.config import BrokerConfig, subscription_frame_limit
from broker.monitor import ConnectionMonitor
from broker.proxy import Proxy, ProxyStats
from fabric import _sockets
from fabric.curve import CurveKeys
from fabric.topic import MAX_TOPIC

__all__ = ["Broker"]

_log = logging.getLogger("logfabric.broker")
_ids = itertools.count()
#: Subscriptions queued per subscriber before libzmq stops reading it (it loses none).
_SUBSCRIPTION_QUEUE = 16
#: Proxies whose backends hold records for peers: they get the drain's remaining time to send them.
_OUTPUT_PROXIES = frozenset(s.proxy for s in OUTPUTS)
#: The proxy counter of frames a proxy's backend sent: what an ingest put on its bridge.
_BE_FRAMES_OUT = 6


class Broker:
    """A broker in this process: ``start()``, ``stop()`` (drains), or ``with Broker(...)``.

    ``Broker(config)`` or ``Broker(push_ingest="tcp://127.0.0.1:*", ...)``:
    keyword arguments override fields of :class:`BrokerConfig`. A ``*`` port
    binds any free port; :attr:`endpoints` then tells which. HTTP is off unless
    ``http`` is set, as in :class:`BrokerConfig` (``logfabric broker`` sets it).
    """

    def __init__(self, config: BrokerConfig | None = None, **overrides: Any) -> None:
        base = config or BrokerConfig()
        self.config = base.with_overrides(**overrides) if overrides else base
        self.endpoints: dict[str, str] = {}
        """Bound addresses by role (pub_ingest, push_ingest, egress, pipeline)."""
        self.started_at: float | None = None
        self.drained = 0
        """Records forwarded during the last drain."""
        self.drain_dropped = 0
        """Messages a full egress queue refused during the last drain."""
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._proxies: dict[str, Proxy] = {}
        self._monitor: ConnectionMonitor | None = None
        self._draining = False
        self._stopped = threading.Event()
        self._http: Any = None
        self._auth: BrokerAuth | None = None
        self._watch: SubscriptionWatch | None = None
        self.limits: ConnectionLimits | None = None
        """The caps on connections per bound socket and per IP address, and their refusals (once started)."""
        self.store: StoreFeed | None = None
        """The record store and what feeds it, when ``store`` is configured (once started)."""
        self.history: HistoryServer | None = None
        """What answers history queries, when ``history`` is configured (once started)."""
        self.control: ControlServer | None = None
        """What carries level changes, when ``control`` is configured (once started)."""

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """True while every socket is bound, every proxy runs and no drain has begun."""
        return (
            self.started_at is not None
            and not self._draining
            and bool(self._proxies)
            and all(p.alive for p in self._proxies.values())
        )

    @property
    def alive(self) -> bool:
        """True unless a proxy died (liveness: restart the broker if False)."""
        if self.started_at is None or self._draining:
            return self.started_at is not None
        return all(p.alive for p in self._proxies.values())

    @property
    def draining(self) -> bool:
        """True once :meth:`stop` has begun."""
        return self._draining

    def statistics(self) -> dict[str, ProxyStats]:
        """Each proxy's counters (frames and bytes), by proxy name."""
        out = {}
        for name, proxy in self._proxies.items():
            try:
                out[name] = proxy.statistics()
            except (TimeoutError, RuntimeError, zmq.ZMQError):
                out[name] = proxy.last  # busy: the last answer, so counters never seem to go back
        return out

    def connections(self, role: str) -> int:
        """Open connections on a bound socket (pub_ingest, push_ingest, egress, pipeline)."""
        return self._monitor.connections(role) if self._monitor else 0

    def refusals(self, role: str) -> dict[str, int]:
        """Handshakes refused on ``role``, by reason (protocol, auth, other)."""
        return self._monitor.handshake_failures(role) if self._monitor else {}

    def auth_refusals(self) -> dict[tuple[str, str], int]:
        """With CurveZMQ on: peers refused, by (socket, reason); see :mod:`broker.auth`."""
        return self._auth.refusals() if self._auth is not None else {}

    def subscriptions(self) -> tuple[int, int]:
        """Distinct subscription prefixes held for subscribers, and their bytes."""
        return self._watch.held if self._watch is not None else (0, 0)

    def subscription_refusals(self) -> dict[str, int]:
        """Egress connections dropped to keep the subscriptions within their budget, by reason."""
        return self._watch.refusals() if self._watch is not None else {}

    def disconnects(self, role: str) -> int:
        """Connections on a bound socket that ended (closed by the peer or dropped by the broker)."""
        return self._monitor.disconnects(role) if self._monitor else 0

    def allowed_keys(self) -> dict[str, int]:
        """With CurveZMQ on: the number of keys in each allow-list (producers, subscribers)."""
        if self._auth is None:
            return {}
        counts = {"producers": len(self._auth.producers.keys), "subscribers": len(self._auth.subscribers.keys)}
        if self._auth.operators is not None:
            counts["operators"] = len(self._auth.operators.keys)
        return counts

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Broker:
        """Bind every socket, start the proxies (and HTTP if configured). Returns self."""
        if self.started_at is not None:
            raise RuntimeError("this Broker is already started")
        cfg = self.config
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ctx = ctx
        tag = f"{next(_ids)}-{id(self):x}"
        monitor = ConnectionMonitor(ctx)
        try:
            up_keys = upstream_keys(cfg)
            box = PenaltyBox()
            # The ZAP handler must exist before a socket binds. Without CurveZMQ
            # no handler runs (libzmq then accepts every ZMTP 3 NULL handshake;
            # a ZAP handler in plaintext mode cost silent losses after a broker
            # restart), so penalized subscribers are shut out by the watch as
            # soon as the monitor reports their connection accepted instead.
            if cfg.curve:
                self._auth = BrokerAuth(cfg)
                self._auth.start(ctx, box)
            monitor.on_event = monitor_hook(self._auth, up_keys)
            central = self._socket(zmq.XSUB, recv=True)
            # Subscribers only subscribe: no frame of theirs needs more (libzmq resets the connection).
            # The XPUB takes every queued subscription into its trie, even from a connection being
            # dropped: with a short queue what a dropped subscriber sent stays in the kernel instead.
            egress = self._output(EGRESS, monitor, _SUBSCRIPTION_QUEUE)
            watch = SubscriptionWatch(
                ctx,
                f"inproc://logfabric-{tag}-watch",
                cfg.subscription_budget,
                lambda: monitor.accepted_fds(EGRESS.role),
                box,
            )
            self._watch = watch
            watch.serve(self.endpoints[EGRESS.role])
            central.connect(watch.address)
            bridges = [self._ingest(s, tag, monitor, up_keys) for s in INGESTS if getattr(cfg, s.field)]
            for address in bridges:
                central.connect(address)
            self._proxies[EGRESS.proxy] = Proxy(ctx, EGRESS.proxy, central, egress)

            if getattr(cfg, PIPELINE.field):
                pipe_in = self._socket(zmq.XSUB, recv=True)
                for address in bridges:
                    pipe_in.connect(address)
                pipe_in.send(b"\x01")  # subscribe to everything, upstream too
                # A PUSH never reads what its peers send: keep one small message per peer at most
                # (then libzmq stops reading it and the heartbeat drops it), not RCVHWM large ones.
                pipe_out = self._output(PIPELINE, monitor, 1)
                self._proxies[PIPELINE.proxy] = Proxy(ctx, PIPELINE.proxy, pipe_in, pipe_out)
            if cfg.store is not None:
                self.store = self._store(bridges)
            if cfg.history is not None:
                history = self._socket(zmq.ROUTER, recv=True)
                tune_socket(history)
                self._bind(HISTORY.role, history, cfg.history, monitor)
                self.history = HistoryServer(history, self.store, self._published)
            if cfg.control is not None:
                control = self._socket(zmq.ROUTER, recv=True)
                tune_control(control)
                self._bind(CONTROL.role, control, cfg.control, monitor)
                self.control = ControlServer(control, self._auth)
            limits = ConnectionLimits(
                self.endpoints, cfg.max_connections, cfg.max_connections_per_ip, http=cfg.http is not None
            )
            limits.attach(monitor, {EGRESS.role: watch.refuse_penalized} if self._auth is None else None)
            self.limits = limits
        except BaseException:
            self._close_all()
            raise
        self._monitor = monitor
        monitor.start()
        watch.start()
        if self.store is not None:
            self.store.start()
        if self.history is not None:
            self.history.start()
        if self.control is not None:
            self.control.start()
        for proxy in self._proxies.values():
            proxy.start()
        self.started_at = time.time()
        if cfg.http is not None:
            try:
                from broker.http import serve  # needs prometheus-client (the broker extra)

                self._http = serve(self, cfg.http)
            except BaseException:  # e.g. a busy port: leave nothing bound or running behind
                self._draining = True
                for proxy in self._proxies.values():
                    proxy.terminate()
                self._close_all()
                self._stopped.set()
                raise
            self.endpoints["http"] = "{}:{}".format(*self._http.server_address[:2])
        _log.info("broker ready: %s", ", ".join(f"{k}={v}" for k, v in self.endpoints.items()))
        return self

    def _socket(self, kind: int, *, recv: bool = False, ingest: bool = False) -> zmq.Socket[bytes]:
        assert self._ctx is not None
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.config.hwm)
        sock.setsockopt(zmq.RCVHWM, self.config.hwm)
        if ingest:
            sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message)
        if recv or kind in (zmq.XPUB, zmq.PUSH):
            _sockets.tune(sock)
        return sock

    def _ingest(self, ingest: Socket, tag: str, monitor: ConnectionMonitor, keys: CurveKeys | None) -> str:
        """Open ``ingest`` and its proxy to an in-process bridge; return the bridge's address."""
        assert self._ctx is not None
        endpoints = getattr(self.config, ingest.field)
        front = self._socket(ingest.kind, recv=True, ingest=True)
        if ingest.bound:
            self._bind(ingest.role, front, endpoints, monitor)
        else:
            monitor.watch(ingest.role, front)  # before connecting, or the CONNECTED event can be missed
            if keys is not None:
                keys.apply(front)
            for endpoint in endpoints:
                _attach(ingest.role, front, endpoint, bind=False)
        assert ingest.bridge is not None
        bridge = self._socket(ingest.bridge)
        address = f"inproc://logfabric-{tag}-{ingest.proxy}"
        bridge.bind(address)
        self._proxies[ingest.proxy] = Proxy(self._ctx, ingest.proxy, front, bridge)
        return address

    def _store(self, bridges: list[str]) -> StoreFeed:
        """The store's own subscriber of every bridge: a bridge drops for it alone when it falls behind."""
        cfg = self.config
        assert cfg.store is not None
        sock = self._socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # everything, upstream too (as the pipeline)
        for address in bridges:
            sock.connect(address)
        store = Store(
            cfg.store, retention_bytes=cfg.retention_bytes, retention_age=cfg.retention_age, max_topic=MAX_TOPIC
        )
        return StoreFeed(sock, store, self._published)

    def _published(self) -> int | None:
        """Records the ingest proxies have put on their bridges so far."""
        total = 0
        for ingest in INGESTS:
            proxy = self._proxies.get(ingest.proxy)
            if proxy is None:
                continue
            try:
                total += proxy.statistics()[_BE_FRAMES_OUT]
            except (TimeoutError, RuntimeError, zmq.ZMQError):
                total += proxy.last[_BE_FRAMES_OUT]
        return total

    def _output(self, output: Socket, monitor: ConnectionMonitor, queue: int) -> zmq.Socket[bytes]:
        """Bind ``output``, whose peers send nothing but subscriptions (at most ``queue`` queued per peer)."""
        sock = self._socket(output.kind)
        sock.setsockopt(zmq.MAXMSGSIZE, subscription_frame_limit(self.config.curve))
        sock.setsockopt(zmq.RCVHWM, queue)
        self._bind(output.role, sock, getattr(self.config, output.field), monitor)
        return sock

    def _bind(self, role: str, sock: zmq.Socket[bytes], endpoint: str, monitor: ConnectionMonitor) -> None:
        # Without a ZAP domain libzmq takes any byte stream not starting with a
        # ZMTP 3 greeting for a ZMTP 1.0/2.0 peer: random bytes or an HTTP
        # request become forwarded messages (or a subscribe-all at the egress).
        # With one it refuses those peers. Each bound socket has its own domain
        # (with CurveZMQ the ZAP handler refuses penalized subscribers at the egress);
        # with CurveZMQ each is also a CURVE server.
        if self._auth is not None:
            self._auth.serve(role, sock)
        else:
            sock.setsockopt(zmq.ZAP_DOMAIN, socket_of(role).domain.encode())
        sock.setsockopt(zmq.HANDSHAKE_IVL, int(self.config.handshake_timeout * 1000))
        monitor.watch(role, sock)  # before binding, or a peer already retrying could connect unseen
        _attach(role, sock, endpoint, bind=True)
        self.endpoints[role] = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def stop(self, drain_timeout: float | None = None) -> int:
        """Turn unready, forward what is in flight, close. Returns records drained.

        The drain stops taking new connections' worth of work by ending the
        proxies, then forwards whatever still arrives on the open ingests until
        they stay quiet for 0.3 s or ``drain_timeout`` (default: the config's)
        runs out; queued egress messages then get the remaining time to leave.
        """
        if self.started_at is None or self._stopped.is_set():
            return 0
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        deadline = time.monotonic() + timeout
        self._draining = True
        begun = time.monotonic()
        for sock in SOCKETS:  # ingests first
            if sock.proxy in self._proxies:
                self._proxies[sock.proxy].terminate()
        drained, dropped, why = drain(self._proxies, deadline)
        self.drained = drained
        self.drain_dropped += dropped
        _log.info("drained %d record(s) in %.2f s (%s); closing", drained, time.monotonic() - begun, why)
        self._close_all(linger_until=deadline)
        self._stopped.set()
        return drained

    def _close_all(self, linger_until: float | None = None) -> None:
        if self.control is not None:
            self.control.stop()
        if self.history is not None:  # before the store it reads
            self.history.stop()
        if self.store is not None:  # before the context goes: the feed closes its own socket
            self.store.stop()
            if self.drained:
                _log.info("store: the %d record(s) of the shutdown drain were forwarded, not stored", self.drained)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._monitor is not None:
            self._monitor.stop()
        if self._watch is not None:
            self._watch.stop()
        if self._auth is not None:
            self._auth.stop()
        linger = 0 if linger_until is None else max(0, int((linger_until - time.monotonic()) * 1000))
        for proxy in self._proxies.values():
            proxy.close()
        if self._ctx is not None:
            for name, proxy in self._proxies.items():
                proxy.backend.setsockopt(zmq.LINGER, linger if name in _OUTPUT_PROXIES else 0)
            self._ctx.destroy(linger=None)
            self._ctx = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "draining" if self._draining else "ready" if self.ready else "stopped"
        return f"<Broker {state} {self.endpoints}>"


def _attach(role: str, sock: zmq.Socket[bytes], endpoint: str, *, bind: bool) -> None:
    try:
        _sockets.attach(sock, endpoint, bind=bind)
    except ValueError as exc:  # a busy port, an address not on this host
        raise ConfigError(f"{role}: {exc}") from exc
