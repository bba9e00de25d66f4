"""What the HTTP side and the metrics read of a running broker (:class:`~broker.Broker` provides it).

They take this protocol rather than the ``Broker`` class, so that neither
imports the module that starts them.
"""

from __future__ import annotations

from typing import Protocol

from broker._connections import ConnectionLimits
from broker.config import BrokerConfig
from broker.proxy import ProxyStats

__all__ = ["BrokerView"]


class BrokerView(Protocol):
    """A broker as its probes and its metrics see it."""

    @property
    def config(self) -> BrokerConfig:
        """The settings it runs with."""

    @property
    def endpoints(self) -> dict[str, str]:
        """Bound addresses by role."""

    @property
    def started_at(self) -> float | None:
        """When it started (``time.time()``), or None."""

    @property
    def limits(self) -> ConnectionLimits | None:
        """The caps on connections (once started)."""

    @property
    def drained(self) -> int:
        """Records forwarded during the last drain."""

    @property
    def ready(self) -> bool:
        """Whether it takes records (readiness)."""

    @property
    def alive(self) -> bool:
        """False once a proxy died (liveness)."""

    def statistics(self) -> dict[str, ProxyStats]:
        """Each proxy's counters, by proxy name."""

    def connections(self, role: str) -> int:
        """Open connections on socket ``role``."""

    def disconnects(self, role: str) -> int:
        """Connections on socket ``role`` that ended."""

    def refusals(self, role: str) -> dict[str, int]:
        """Handshakes refused on ``role``, by reason."""

    def auth_refusals(self) -> dict[tuple[str, str], int]:
        """Peers CurveZMQ refused, by (socket, reason)."""

    def allowed_keys(self) -> dict[str, int]:
        """Keys in each CurveZMQ allow-list."""

    def subscriptions(self) -> tuple[int, int]:
        """Distinct subscription prefixes held, and their bytes."""

    def subscription_refusals(self) -> dict[str, int]:
        """Egress connections dropped for their subscriptions, by reason."""
