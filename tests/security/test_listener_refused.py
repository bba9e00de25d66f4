"""A ZmqListener whose CURVE handshake a broker refuses says so on ``logfabric.curve``, as subscribe() does.

Before, a refused listener received nothing and said nothing: only the
broker's log showed why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from broker import Broker
from tests.helpers.keys import KeySet
from tests.helpers.waiting import poll_until


@pytest.mark.parametrize("who", ["unregistered key", "wrong server key"])
def test_a_refused_listener_warns_why(
    who: str,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_listener: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener with an unregistered key or the wrong server key logs the refusal, once per reason."""
    caplog.set_level(logging.WARNING, logger="logfabric.curve")
    broker = start_curve_broker()
    options = curve_keys.client(curve_keys.stranger if who == "unregistered key" else curve_keys.subscriber)
    if who == "wrong server key":
        options["curve_server_key"] = str(curve_keys.other_broker_public)
    expected = {
        "unregistered key": "refused this subscriber's CURVE key",
        "wrong server key": "hung up during the CURVE handshake",
    }[who]
    make_listener(broker.endpoints["egress"], **options)

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "logfabric.curve"]

    assert poll_until(lambda: any(expected in m and broker.endpoints["egress"] in m for m in warned())), warned()
    assert len(warned()) == len(set(warned()))  # rate-limited: each warning is given once
