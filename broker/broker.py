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
from broker._subscriptions import PenaltyBox, SubscriptionWatch
from broker.auth import BrokerAuth, domain_of, monitor_hook, upstream_keys
from broker.config import BrokerConfig, subscription_frame_limit
from broker.monitor import ConnectionMonitor
from broker.proxy import Proxy, ProxyStats
from fabric import _sockets

__all__ = ["Broker"]

_log = logging.getLogger("logfabric.broker")
_ids = itertools.count()
_QUIET_SECONDS = 0.3
#: Messages the drain takes from one socket before it looks at the clock again:
#: a peer that never stops sending must not keep the broker past its deadline.
_DRAIN_BATCH = 1000
#: Subscriptions queued per subscriber before libzmq stops reading it (it loses none).
_SUBSCRIPTION_QUEUE = 16


class Broker:
    """A broker in this process: ``start()``, ``stop()`` (drains), or ``with Broker(...)``.

    ``Broker(config)`` or ``Broker(push_ingest="tcp://127.0.0.1:*", ...)``:
    keyword arguments override fields of :class:`BrokerConfig`. A ``*`` port
    binds any free port; :attr:`endpoints` then tells which. HTTP is off unless
    ``http`` is set (the CLI sets it).
    """

    def __init__(self, config: BrokerConfig | None = None, **overrides: Any) -> None:
        base = config or BrokerConfig(http=None)
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
        return {"producers": len(self._auth.producers.keys), "subscribers": len(self._auth.subscribers.keys)}

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
            egress = self._socket(zmq.XPUB)
            # Subscribers only subscribe: no frame of theirs needs more (libzmq resets the connection).
            # The XPUB takes every queued subscription into its trie, even from a connection being
            # dropped: with a short queue what a dropped subscriber sent stays in the kernel instead.
            egress.setsockopt(zmq.MAXMSGSIZE, subscription_frame_limit(cfg.curve))
            egress.setsockopt(zmq.RCVHWM, _SUBSCRIPTION_QUEUE)
            self._bind("egress", egress, cfg.egress, monitor)
            watch = SubscriptionWatch(
                ctx,
                f"inproc://logfabric-{tag}-watch",
                cfg.subscription_budget,
                lambda: monitor.accepted_fds("egress"),
                box,
            )
            self._watch = watch
            watch.serve(self.endpoints["egress"])
            central.connect(watch.address)
            bridges = []

            pub_in = self._socket(zmq.XSUB, recv=True, ingest=True)
            self._bind("pub_ingest", pub_in, cfg.pub_ingest, monitor)
            pub_bridge = self._socket(zmq.XPUB)
            pub_bridge.bind(f"inproc://logfabric-{tag}-pub")
            bridges.append(f"inproc://logfabric-{tag}-pub")
            self._proxies["pub"] = Proxy(ctx, "pub", pub_in, pub_bridge)

            push_in = self._socket(zmq.PULL, recv=True, ingest=True)
            self._bind("push_ingest", push_in, cfg.push_ingest, monitor)
            push_bridge = self._socket(zmq.PUB)
            push_bridge.bind(f"inproc://logfabric-{tag}-push")
            bridges.append(f"inproc://logfabric-{tag}-push")
            self._proxies["push"] = Proxy(ctx, "push", push_in, push_bridge)

            if cfg.upstream:
                up_in = self._socket(zmq.XSUB, recv=True, ingest=True)
                monitor.watch("upstream", up_in)  # before connecting, or the CONNECTED event can be missed
                if up_keys is not None:
                    up_keys.apply(up_in)
                for ep in cfg.upstream:
                    _sockets.attach(up_in, ep, bind=False)
                up_bridge = self._socket(zmq.XPUB)
                up_bridge.bind(f"inproc://logfabric-{tag}-upstream")
                bridges.append(f"inproc://logfabric-{tag}-upstream")
                self._proxies["upstream"] = Proxy(ctx, "upstream", up_in, up_bridge)

            for address in bridges:
                central.connect(address)
            self._proxies["egress"] = Proxy(ctx, "egress", central, egress)

            if cfg.pipeline:
                pipe_in = self._socket(zmq.XSUB, recv=True)
                for address in bridges:
                    pipe_in.connect(address)
                pipe_in.send(b"\x01")  # subscribe to everything, upstream too
                pipe_out = self._socket(zmq.PUSH)
                # A PUSH never reads what its peers send: keep one small message per peer at most
                # (then libzmq stops reading it and the heartbeat drops it), not RCVHWM large ones.
                pipe_out.setsockopt(zmq.MAXMSGSIZE, subscription_frame_limit(cfg.curve))
                pipe_out.setsockopt(zmq.RCVHWM, 1)
                self._bind("pipeline", pipe_out, cfg.pipeline, monitor)
                self._proxies["pipeline"] = Proxy(ctx, "pipeline", pipe_in, pipe_out)
            limits = ConnectionLimits(
                self.endpoints, cfg.max_connections, cfg.max_connections_per_ip, http=cfg.http is not None
            )
            limits.attach(monitor, {"egress": watch.refuse_penalized} if self._auth is None else None)
            self.limits = limits
        except BaseException:
            self._close_all()
            raise
        self._monitor = monitor
        monitor.start()
        watch.start()
        for proxy in self._proxies.values():
            proxy.start()
        self.started_at = time.time()
        if cfg.http is not None:
            from broker.http import serve

            try:
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
            sock.setsockopt(zmq.ZAP_DOMAIN, domain_of(role).encode())
        sock.setsockopt(zmq.HANDSHAKE_IVL, int(self.config.handshake_timeout * 1000))
        monitor.watch(role, sock)  # before binding, or a peer already retrying could connect unseen
        _sockets.attach(sock, endpoint, bind=True)
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
        for name in ("pub", "push", "upstream", "egress", "pipeline"):
            if name in self._proxies:
                self._proxies[name].terminate()
        drained, why = self._drain(deadline)
        self.drained = drained
        _log.info("drained %d record(s) in %.2f s (%s); closing", drained, time.monotonic() - begun, why)
        self._close_all(linger_until=deadline)
        self._stopped.set()
        return drained

    def _drain(self, deadline: float) -> tuple[int, str]:
        """Forward in Python what still arrives after the proxies ended."""
        proxies = self._proxies
        egress = proxies["egress"].backend
        pipeline = proxies["pipeline"].backend if "pipeline" in proxies else None
        # (source, destinations): ingests go to every output; bridge leftovers
        # were already fanned out, so each output's own XSUB feeds only it.
        routes: list[tuple[zmq.Socket[bytes], list[zmq.Socket[bytes]]]] = []
        outputs = [egress] + ([pipeline] if pipeline is not None else [])
        for name in ("pub", "push", "upstream"):
            if name in proxies:
                routes.append((proxies[name].frontend, outputs))
        routes.append((proxies["egress"].frontend, [egress]))
        if pipeline is not None:
            routes.append((proxies["pipeline"].frontend, [pipeline]))
        poller = zmq.Poller()
        for source, _ in routes:
            poller.register(source, zmq.POLLIN)
        poller.register(egress, zmq.POLLIN)  # subscriptions: read and ignore
        reserve = min(1.0, max(0.0, (deadline - time.monotonic()) / 4))  # time left to flush egress
        records = 0
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline - reserve:
                return records, "drain timeout reached"
            if now - quiet_since >= _QUIET_SECONDS:
                return records, "ingests quiet"
            events = dict(poller.poll(50))
            if not events:
                continue
            if egress in events:
                for _ in range(_DRAIN_BATCH):
                    if _recv_nowait(egress) is None:
                        break
            for source, destinations in routes:
                if source not in events:
                    continue
                for _ in range(_DRAIN_BATCH):
                    if (message := _recv_nowait(source)) is None:
                        break
                    records += 1
                    for out in destinations:
                        try:
                            out.send_multipart(message, zmq.NOBLOCK)
                        except zmq.Again:  # a full subscriber queue: the subscriber sees a gap
                            self.drain_dropped += 1
                    quiet_since = time.monotonic()

    def _close_all(self, linger_until: float | None = None) -> None:
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
                proxy.backend.setsockopt(zmq.LINGER, linger if name in ("egress", "pipeline") else 0)
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


def _recv_nowait(sock: zmq.Socket[bytes]) -> list[bytes] | None:
    try:
        return sock.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
