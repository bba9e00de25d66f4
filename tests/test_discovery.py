"""dns+tcp:// endpoints against three real brokers on 127.0.0.1, 127.0.0.2 and 127.0.0.3.

The brokers' egresses share one port on three loopback addresses, as the pods
behind a Kubernetes headless Service share one port on three IPs. An injectable
resolver plays the part of DNS.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import zmq

import fabric
from broker import Broker
from fabric.discovery import Endpoints
from tests.helpers.capture import Capture
from tests.helpers.waiting import send_until, wait_until

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
NAME = "brokers.test"


def _port_free_on_all() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((ADDRESSES[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in ADDRESSES[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    pytest.fail("no port free on all three loopback addresses")


class Fleet:
    """Three brokers, one push producer per broker, and a DNS answer the test controls."""

    def __init__(self, stack: ExitStack) -> None:
        self.port = _port_free_on_all()
        self.answer: list[str] = list(ADDRESSES)
        self.handlers: list[fabric.ZmqHandler] = []
        self.brokers: list[Broker] = []
        for i, address in enumerate(ADDRESSES):
            broker = stack.enter_context(
                Broker(
                    pub_ingest="tcp://127.0.0.1:*",
                    push_ingest="tcp://127.0.0.1:*",
                    egress=f"tcp://{address}:{self.port}",
                )
            )
            self.brokers.append(broker)
            handler = fabric.ZmqHandler(broker.endpoints["push_ingest"], service=f"svc-b{i}", linger=0.5)
            stack.callback(handler.close)
            self.handlers.append(handler)

    @property
    def endpoint(self) -> str:
        return f"dns+tcp://{NAME}:{self.port}"

    def resolver(self, host: str, port: int) -> list[str]:
        """The test's DNS: answers for NAME only."""
        if host != NAME:
            raise OSError(f"unknown host {host}")
        return list(self.answer)

    def send(self, broker: int, msg: str = "record") -> None:
        """One record through broker number ``broker``."""
        record = logging.LogRecord("app", logging.INFO, __file__, 1, msg, (), None)
        self.handlers[broker].handle(record)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with ExitStack() as stack:
        yield Fleet(stack)


def _until(condition: Callable[[], bool], action: Callable[[], object], timeout: float = 10.0) -> bool:
    """Repeat ``action`` until ``condition`` holds (bounded)."""
    return send_until(lambda _: action(), condition, timeout) is not None


def services(capture: Capture) -> list[str]:
    """The services of the ``app`` records a listener delivered, in arrival order."""
    return [str(r.__dict__.get("service")) for r in capture.named("app")]


class TestListenerFanOut:
    """A ZmqListener given one dns+tcp:// name."""

    def test_receives_from_every_broker_behind_the_name(self, fleet: Fleet) -> None:
        """Records carried by each of three brokers all reach a listener given the one name."""
        capture = Capture()
        with fabric.ZmqListener(fleet.endpoint, capture, resolver=fleet.resolver, resolve_interval=0.2):
            for i in range(3):
                seen = _until(lambda i=i: f"svc-b{i}" in services(capture), lambda i=i: fleet.send(i))
                assert seen, f"nothing from broker {i} reached the listener: {set(services(capture))}"

    def test_connects_a_new_address_at_the_next_resolve(self, fleet: Fleet) -> None:
        """A broker that appears in DNS later is connected within a resolve interval."""
        fleet.answer = [ADDRESSES[0]]
        capture = Capture()
        with fabric.ZmqListener(fleet.endpoint, capture, resolver=fleet.resolver, resolve_interval=0.2):
            assert _until(lambda: "svc-b0" in services(capture), lambda: fleet.send(0))
            for _ in range(20):
                fleet.send(1)
            capture.clear()
            # Broker 0's next record arriving means broker 1's would have too, had it been connected.
            assert _until(lambda: "svc-b0" in services(capture), lambda: fleet.send(0))
            assert "svc-b1" not in services(capture)
            fleet.answer = [ADDRESSES[0], ADDRESSES[1]]
            assert _until(lambda: "svc-b1" in services(capture), lambda: fleet.send(1))


class TestEndpoints:
    """Endpoints.refresh on a raw SUB socket, driven by hand."""

    @pytest.fixture
    def sub(self) -> Iterator[zmq.Socket[bytes]]:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.setsockopt(zmq.LINGER, 0)
        yield sock
        sock.close(linger=0)
        ctx.term()

    @staticmethod
    def _received(sock: zmq.Socket[bytes], seen: set[str]) -> Callable[[], bool]:
        """Collect which svc-bN names arrived; the returned check never blocks."""

        def drain() -> bool:
            while sock.poll(0):
                data = b"".join(sock.recv_multipart())
                seen.update(f"svc-b{i}" for i in range(3) if f"svc-b{i}".encode() in data)
            return True

        return drain

    def test_gone_address_stays_connected_for_the_grace_then_is_dropped(
        self, fleet: Fleet, sub: zmq.Socket[bytes]
    ) -> None:
        """A broker that left DNS still delivers during the grace period and not after it."""
        endpoints = Endpoints([fleet.endpoint], fleet.resolver, interval=60, grace=0.5)
        endpoints.attach(sub, bind=False)
        gone = f"tcp://{ADDRESSES[2]}:{fleet.port}"
        assert gone in endpoints.connected
        seen: set[str] = set()
        drain = self._received(sub, seen)
        assert _until(lambda: drain() and "svc-b2" in seen, lambda: fleet.send(2))

        fleet.answer = list(ADDRESSES[:2])
        endpoints.refresh(sub)
        assert gone in endpoints.connected and gone in endpoints.gone
        seen.clear()
        assert _until(lambda: drain() and "svc-b2" in seen, lambda: fleet.send(2)), "dropped before the grace ran out"

        time.sleep(0.6)  # a timer: the grace (0.5 s) runs out
        endpoints.refresh(sub)
        assert gone not in endpoints.connected and not endpoints.gone
        # the disconnect completes as the socket is used (drain) and libzmq's I/O thread closes the connection
        assert wait_until(lambda: drain() and fleet.brokers[2].connections("egress") == 0), "still at broker 2"
        for _ in range(20):
            fleet.send(2)
        seen.clear()
        assert _until(lambda: drain() and "svc-b0" in seen, lambda: fleet.send(0))
        drain()
        assert "svc-b2" not in seen
        assert fleet.brokers[2].connections("egress") == 0, "the socket connected to broker 2 again"

    def test_address_back_within_the_grace_is_kept(self, fleet: Fleet, sub: zmq.Socket[bytes]) -> None:
        """An address that returns to DNS before the grace runs out is not disconnected later."""
        endpoints = Endpoints([fleet.endpoint], fleet.resolver, interval=60, grace=0.3)
        endpoints.attach(sub, bind=False)
        fleet.answer = list(ADDRESSES[:2])
        endpoints.refresh(sub)
        fleet.answer = list(ADDRESSES)
        endpoints.refresh(sub)
        time.sleep(0.4)  # a timer: the grace (0.3 s) would have run out
        endpoints.refresh(sub)
        assert endpoints.connected == {f"tcp://{a}:{fleet.port}" for a in ADDRESSES}
        assert not endpoints.gone

    def test_resolver_failure_at_refresh_keeps_connections(self, fleet: Fleet, sub: zmq.Socket[bytes]) -> None:
        """A DNS failure after start keeps every current connection instead of dropping them."""
        endpoints = Endpoints([fleet.endpoint], fleet.resolver, interval=60, grace=0)
        endpoints.attach(sub, bind=False)
        before = set(endpoints.connected)

        def failing(host: str, port: int) -> list[str]:
            raise OSError("temporary failure in name resolution")

        endpoints.resolver = failing
        endpoints.refresh(sub)
        assert endpoints.connected == before and len(before) == 3

    def test_unresolvable_name_at_start_is_a_clear_error(self, sub: zmq.Socket[bytes]) -> None:
        """A name that does not resolve when the socket attaches raises ValueError naming it."""

        def nothing(host: str, port: int) -> list[str]:
            raise OSError("Name or service not known")

        endpoints = Endpoints(["dns+tcp://nowhere.test:5558"], nothing)
        with pytest.raises(ValueError, match=r"cannot resolve 'nowhere\.test'"):
            endpoints.attach(sub, bind=False)

    @pytest.mark.parametrize("bad", ["dns+tcp://nameonly", "dns+tcp://:5558", "dns+tcp://host:port"])
    def test_malformed_endpoint_says_the_expected_form(self, bad: str) -> None:
        """A dns+tcp endpoint without NAME:PORT is refused with the expected form in the message."""
        with pytest.raises(ValueError, match=r"expected dns\+tcp://NAME:PORT"):
            Endpoints([bad])

    def test_cannot_be_bound(self, sub: zmq.Socket[bytes]) -> None:
        """Binding a dns+tcp endpoint is refused: it names remote brokers."""
        with pytest.raises(ValueError, match="only be connected"):
            Endpoints(["dns+tcp://brokers.test:5558"], lambda h, p: ["127.0.0.1"]).attach(sub, bind=True)
