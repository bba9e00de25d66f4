"""Prometheus metrics, read from the proxies' own counters and the socket monitor."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator

import zmq
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import fabric
from broker._connections import REASONS
from broker._control import OPS as CONTROL_OPS
from broker._control import OUTCOMES as CONTROL_OUTCOMES
from broker._control import ControlServer
from broker._history import OUTCOMES, HistoryServer
from broker._roles import EGRESS, INGESTS, OUTPUTS, SERVED, SOCKETS
from broker._store_feed import StoreFeed
from broker._store_metrics import store_metrics
from broker._view import BrokerView
from broker.auth import REASONS as AUTH_REASONS

__all__ = ["registry_for"]

# Proxy counter positions (libzmq proxy STATISTICS): frontend then backend,
# each as frames in, bytes in, frames out, bytes out.
_FE_FRAMES_IN, _FE_BYTES_IN = 0, 1
_BE_FRAMES_IN, _BE_FRAMES_OUT, _BE_BYTES_OUT = 4, 6, 7
_EGRESS = EGRESS.role
#: Sockets as the metrics list them: the bound ones, then those that connect.
_MONITORED = SERVED + tuple(s for s in SOCKETS if not s.bound)


class _BrokerCollector(Collector):
    def __init__(self, broker: BrokerView) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        b = self.broker
        stats = b.statistics()
        # libzmq counts frames; a logfabric record is one frame (topic NUL payload).
        received = CounterMetricFamily(
            "logfabric_broker_records_received", "Records received, by ingest.", labels=["ingest"]
        )
        received_bytes = CounterMetricFamily(
            "logfabric_broker_bytes_received", "Bytes received (topic and payload), by ingest.", labels=["ingest"]
        )
        for sock in INGESTS:
            if sock.proxy in stats:
                received.add_metric([sock.flow], stats[sock.proxy][_FE_FRAMES_IN])
                received_bytes.add_metric([sock.flow], stats[sock.proxy][_FE_BYTES_IN])
        sent = CounterMetricFamily(
            "logfabric_broker_records_sent",
            "Records forwarded, by egress (before per-subscriber filtering).",
            labels=["egress"],
        )
        sent_bytes = CounterMetricFamily(
            "logfabric_broker_bytes_sent", "Bytes forwarded, by egress.", labels=["egress"]
        )
        for sock in OUTPUTS:
            if sock.proxy in stats:
                sent.add_metric([sock.flow], stats[sock.proxy][_BE_FRAMES_OUT])
                sent_bytes.add_metric([sock.flow], stats[sock.proxy][_BE_BYTES_OUT])
        subscriptions = CounterMetricFamily(
            "logfabric_broker_subscription_messages", "Subscribe and unsubscribe messages from subscribers."
        )
        subscriptions.add_metric([], stats.get(EGRESS.proxy, (0,) * 8)[_BE_FRAMES_IN])
        malformed = CounterMetricFamily(
            "logfabric_broker_malformed",
            "Peers refused at the handshake (garbage or non-ZMTP bytes, bad security), by socket and reason.",
            labels=["socket", "reason"],
        )
        disconnects = CounterMetricFamily(
            "logfabric_broker_disconnects",
            "Connections that ended, by socket: closed by the peer, or dropped by the broker (a frame over the "
            "size limit, a heartbeat timeout, the subscription budget).",
            labels=["socket"],
        )
        connections = GaugeMetricFamily(
            "logfabric_broker_connections",
            "Open connections, by socket (producers at ingests, subscribers at egress).",
            labels=["socket"],
        )
        for sock in _MONITORED:
            role = sock.role
            if role in b.endpoints or (not sock.bound and getattr(b.config, sock.field)):
                connections.add_metric([role], b.connections(role))
                disconnects.add_metric([role], b.disconnects(role))
                for reason, count in b.refusals(role).items():
                    malformed.add_metric([role, reason], count)
        limit = GaugeMetricFamily(
            "logfabric_broker_connection_limit",
            "Connections a bound socket holds at most, in all (scope=socket) and from one IP address (scope=address).",
            labels=["socket", "scope"],
        )
        refused_connections = CounterMetricFamily(
            "logfabric_broker_connections_refused",
            "Connections shut down as soon as accepted because their socket held its cap (socket_full) or their "
            "IP address held its share (address_full), by socket and reason.",
            labels=["socket", "reason"],
        )
        if b.limits is not None:
            refused_by = b.limits.refusals()
            for role, (cap, per_ip) in b.limits.caps.items():
                limit.add_metric([role, "socket"], cap)
                limit.add_metric([role, "address"], per_ip)
                for reason in REASONS:
                    refused_connections.add_metric([role, reason], refused_by.get((role, reason), 0))
        held, held_bytes = b.subscriptions()
        subscriptions_held = GaugeMetricFamily(
            "logfabric_broker_subscriptions",
            "Distinct subscription prefixes the broker holds for its subscribers.",
            labels=["socket"],
        )
        subscriptions_held.add_metric([_EGRESS], held)
        subscription_bytes = GaugeMetricFamily(
            "logfabric_broker_subscription_bytes",
            "Bytes of the distinct subscription prefixes held for subscribers (libzmq spends about 200 times this).",
            labels=["socket"],
        )
        subscription_bytes.add_metric([_EGRESS], held_bytes)
        budget = GaugeMetricFamily(
            "logfabric_broker_subscription_budget_bytes", "The subscription budget (subscription_budget), in bytes."
        )
        budget.add_metric([], b.config.subscription_budget)
        subscriptions_refused = CounterMetricFamily(
            "logfabric_broker_subscriptions_refused",
            "Subscriber connections dropped for their subscriptions (over_budget, sent_too_much), or refused at the "
            "handshake for a while after a drop (penalized), by socket and reason.",
            labels=["socket", "reason"],
        )
        refused_subscribers = b.subscription_refusals()
        for reason in ("over_budget", "sent_too_much", "penalized"):
            subscriptions_refused.add_metric([_EGRESS, reason], refused_subscribers.get(reason, 0))
        auth_refused = CounterMetricFamily(
            "logfabric_broker_auth_refused",
            "Peers refused by CurveZMQ, by socket and reason (unknown_key, plaintext, bad_handshake, aborted).",
            labels=["socket", "reason"],
        )
        allowed_keys = GaugeMetricFamily(
            "logfabric_broker_curve_allowed_keys", "Public keys in each CurveZMQ allow-list.", labels=["list"]
        )
        if b.config.curve:
            refused = b.auth_refusals()
            for sock in SERVED:
                if sock.role in b.endpoints:
                    for reason in AUTH_REASONS:
                        auth_refused.add_metric([sock.role, reason], refused.get((sock.role, reason), 0))
            for name, count in b.allowed_keys().items():
                allowed_keys.add_metric([name], count)
        drained = CounterMetricFamily("logfabric_broker_drained_records", "Records forwarded during a shutdown drain.")
        drained.add_metric([], b.drained)
        up = GaugeMetricFamily("logfabric_broker_ready", "1 while the broker is ready to take records.")
        up.add_metric([], 1 if b.ready else 0)
        uptime = GaugeMetricFamily("logfabric_broker_uptime_seconds", "Seconds since the broker started.")
        uptime.add_metric([], time.time() - b.started_at if b.started_at else 0.0)
        info = GaugeMetricFamily(
            "logfabric_broker_build_info",
            "Versions of logfabric, pyzmq, libzmq and Python.",
            labels=["version", "pyzmq", "libzmq", "python"],
        )
        info.add_metric([fabric.__version__, zmq.pyzmq_version(), zmq.zmq_version(), platform.python_version()], 1)
        yield from (
            received,
            received_bytes,
            sent,
            sent_bytes,
            subscriptions,
            subscriptions_held,
            subscription_bytes,
            budget,
            subscriptions_refused,
            malformed,
            disconnects,
            auth_refused,
            allowed_keys,
            connections,
            limit,
            refused_connections,
            drained,
            up,
            uptime,
            info,
        )
        store = getattr(b, "store", None)
        if isinstance(store, StoreFeed):
            yield from store_metrics(store.snapshot())
        history = getattr(b, "history", None)
        if isinstance(history, HistoryServer):
            yield from _history_metrics(history)
        control = getattr(b, "control", None)
        if isinstance(control, ControlServer):
            yield from _control_metrics(control)


def _control_metrics(control: ControlServer) -> Iterator[Metric]:
    """The control endpoint's messages by operation and outcome, producers known, loggers changed."""
    requests = CounterMetricFamily(
        "logfabric_broker_control_messages",
        "Control endpoint messages, by op (hello, applied: producers; set, reset, list: operators; other) and "
        "outcome: ok, or why one was refused (malformed, invalid, forbidden, too_many, rate_limited, busy).",
        labels=["op", "outcome"],
    )
    outcomes = dict(control.outcomes)
    for op in CONTROL_OPS:
        for outcome in CONTROL_OUTCOMES:
            requests.add_metric([op, outcome], outcomes.get((op, outcome), 0))
    producers = GaugeMetricFamily(
        "logfabric_broker_control_producers", "Producer processes connected to the control endpoint."
    )
    producers.add_metric([], len(control.producers))
    changed = GaugeMetricFamily(
        "logfabric_broker_control_changed_loggers", "Loggers with a level change in force, over every service."
    )
    changed.add_metric([], control.changed_loggers)
    unanswered = CounterMetricFamily(
        "logfabric_broker_control_unanswered",
        "Producer processes that did not confirm a level change before the operator's answer was due.",
    )
    unanswered.add_metric([], control.unanswered)
    yield from (requests, producers, changed, unanswered)


def _history_metrics(history: HistoryServer) -> Iterator[Metric]:
    """The history endpoint's requests by outcome, and what its answers carried."""
    requests = CounterMetricFamily(
        "logfabric_broker_history_requests",
        "History requests, by outcome: ok, or why one was refused (malformed, version, invalid, too_many, "
        "no_store, unavailable) or its reply dropped (unread: the client did not read its replies).",
        labels=["outcome"],
    )
    outcomes = dict(history.outcomes)
    for outcome in OUTCOMES:
        requests.add_metric([outcome], outcomes.get(outcome, 0))
    records = CounterMetricFamily("logfabric_broker_history_records_sent", "Stored records sent in history replies.")
    records.add_metric([], history.records_sent)
    sent = CounterMetricFamily(
        "logfabric_broker_history_bytes_sent", "Bytes of stored records sent in history replies."
    )
    sent.add_metric([], history.bytes_sent)
    yield from (requests, records, sent)


def registry_for(broker: BrokerView) -> CollectorRegistry:
    """A registry holding the broker's metrics plus the process collector."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry()
    registry.register(_BrokerCollector(broker))
    ProcessCollector(registry=registry)
    return registry
