"""Fixtures for the CurveZMQ tests: real key files, real brokers with CURVE, real sockets on 127.0.0.1.

Every broker is embedded (``broker.Broker``) unless a test starts a process
itself; every wait is bounded; handlers, listeners and brokers are closed at
teardown (handlers with a linger of at most 1 s, listeners with linger 0).
The key files come from the ``curve_keys`` fixture of ``tests/conftest.py``;
the helpers the tests use are in ``tests/helpers`` (``keys.py``,
``capture.py``, ``broker.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from broker import Broker
from tests.helpers.broker import embedded_brokers
from tests.helpers.keys import KeySet


@pytest.fixture
def start_curve_broker(curve_keys: KeySet) -> Iterator[Callable[..., Broker]]:
    """``start_curve_broker(**options)``: an embedded broker with CURVE on (127.0.0.1 ``*`` ports, HTTP on port 0).

    Every broker started is stopped at teardown.
    """
    with embedded_brokers(
        stop_drain=0.3,
        drain_timeout=1.0,
        curve_secret_key=str(curve_keys.broker_secret),
        curve_producers=str(curve_keys.producers),
        curve_subscribers=str(curve_keys.subscribers),
    ) as make:
        yield make
