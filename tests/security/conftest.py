"""Fixtures for the CurveZMQ tests: real key files, real brokers with CURVE, real sockets on 127.0.0.1.

Every broker is embedded (``broker.Broker``) unless a test starts a process
itself; every wait is bounded; handlers, listeners and brokers are closed at
teardown (handlers with a linger of at most 1 s, listeners with linger 0).
Names carry a ``sec_`` or ``curve_`` prefix so they never clash with the
fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker
from fabric.curve import generate
from tests.helpers.broker import Metrics, embedded_brokers
from tests.helpers.net import http_get
from tests.helpers.waiting import send_until, wait_until

#: Logger name of synchronisation probes.
PROBE = "sec.probe"


@dataclass
class KeySet:
    """Key files for one test: the broker's pair, two allow-lists, and keys nobody registered."""

    root: Path
    broker_public: Path
    broker_secret: Path
    producers: Path  # allow-list directory: producer.key
    subscribers: Path  # allow-list directory: subscriber.key
    producer: Path  # producer.key_secret (kept outside the allow-list)
    subscriber: Path  # subscriber.key_secret
    stranger: Path  # stranger.key_secret, in no allow-list
    other_broker_public: Path  # another server's public key (a client holding the wrong one)

    def pair(self, name: str) -> Path:
        """Generate a fresh pair ``name`` in the keys root; return its secret file."""
        return generate(name, self.root / "extra")[1]

    def allow(self, directory: Path, secret: Path) -> None:
        """Copy the public half of ``secret``'s pair into an allow-list directory."""
        public = secret.with_name(secret.name.removesuffix("_secret"))
        (directory / public.name).write_bytes(public.read_bytes())

    def client(self, secret: Path) -> dict[str, str]:
        """The client options for a CURVE connection to the broker with ``secret``."""
        return {"curve_server_key": str(self.broker_public), "curve_client_key": str(secret)}


def make_keys(root: Path) -> KeySet:
    """Generate every key a test needs under ``root`` (the same layout as docs/security.md)."""
    secrets = root / "secrets"
    broker_public, broker_secret = generate("broker", root / "broker")
    producers, subscribers = root / "producers", root / "subscribers"
    producers.mkdir()
    subscribers.mkdir()
    out = {}
    for name, allow in (("producer", producers), ("subscriber", subscribers), ("stranger", None)):
        public, secret = generate(name, secrets)
        if allow is not None:
            (allow / public.name).write_bytes(public.read_bytes())
        out[name] = secret
    other_public, _ = generate("other-broker", root / "other")
    return KeySet(
        root,
        broker_public,
        broker_secret,
        producers,
        subscribers,
        out["producer"],
        out["subscriber"],
        out["stranger"],
        other_public,
    )


@pytest.fixture
def curve_keys(tmp_path: Path) -> KeySet:
    """A fresh set of key files (see :class:`KeySet`)."""
    return make_keys(tmp_path / "keys")


@pytest.fixture
def curve_broker(curve_keys: KeySet) -> Iterator[Callable[..., Broker]]:
    """Start embedded brokers with CURVE on (127.0.0.1 ``*`` ports, HTTP on port 0); stopped at teardown."""
    with embedded_brokers(
        stop_drain=0.3,
        drain_timeout=1.0,
        curve_secret_key=str(curve_keys.broker_secret),
        curve_producers=str(curve_keys.producers),
        curve_subscribers=str(curve_keys.subscribers),
    ) as make:
        yield make


def sec_wait(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """:func:`wait_until` with the security tests' defaults (10 s, polling every 20 ms)."""
    return wait_until(predicate, timeout, interval)


def metrics(broker: Broker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The broker's /metrics as {(sample name, sorted labels): value}."""
    status, body = http_get(broker.endpoints["http"], "/metrics", timeout=5)
    assert status == 200, body[:200]
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in Metrics(body).samples}


def refused(broker: Broker, socket: str, reason: str) -> float:
    """``logfabric_broker_auth_refused_total{socket, reason}`` from /metrics (0 if absent)."""
    key = ("logfabric_broker_auth_refused_total", (("reason", reason), ("socket", socket)))
    return metrics(broker).get(key, 0.0)


def received(broker: Broker, ingest: str) -> float:
    """``logfabric_broker_records_received_total{ingest}`` from /metrics."""
    return metrics(broker).get(("logfabric_broker_records_received_total", (("ingest", ingest),)), 0.0)


def emit(handler: logging.Handler, name: str, msg: str, level: int = logging.ERROR) -> None:
    """Hand one record of logger ``name`` to ``handler``."""
    handler.handle(logging.LogRecord(name, level, __file__, 1, msg, (), None))


def probe(handler: fabric.ZmqHandler, seen: Callable[[], int], timeout: float = 10.0) -> None:
    """Send probe records through ``handler`` until ``seen()`` (probes received) grows; fail after ``timeout``."""
    before = seen()
    if send_until(lambda n: emit(handler, PROBE, f"probe {n}"), lambda: seen() > before, timeout) is None:
        pytest.fail(f"no probe arrived within {timeout} s")


@pytest.fixture(scope="session")
def sec() -> Any:
    """The helpers of this conftest, for test modules (which do not import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        PROBE=PROBE,
        emit=emit,
        metrics=metrics,
        probe=probe,
        received=received,
        refused=refused,
        wait=sec_wait,
        make_keys=make_keys,
    )
