"""The control endpoint under hostile input: every message bounded, refused with a reason, counted; nothing crashes.

An embedded broker with a plaintext control endpoint (network trusted) on
127.0.0.1; raw DEALER sockets play operators and producers. After each attack
a fresh, well-formed request is answered: the broker is still serving (the
sentinel), so nothing is asserted from silence alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import zmq

import broker._control as control_module
from broker import Broker, BrokerConfig, ConfigError
from fabric import _control_wire as wire
from fabric.level import request
from tests.helpers.broker import embedded_metrics
from tests.helpers.net import ROOT, child_env


@pytest.fixture
def control_broker(start_embedded_broker: Callable[..., Broker]) -> tuple[Broker, str]:
    """A started embedded broker with a plaintext control endpoint."""
    started = start_embedded_broker(control="tcp://127.0.0.1:*", control_trust_network=True)
    return started, started.endpoints["control"]


@pytest.fixture
def dealers(zmq_context: zmq.Context[zmq.Socket[bytes]]) -> Callable[[str], zmq.Socket[bytes]]:
    """``dealer(endpoint)``: a connected DEALER (closed with linger 0 at teardown)."""

    def make(endpoint: str) -> zmq.Socket[bytes]:
        sock = zmq_context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        return sock

    return make


def answer(sock: zmq.Socket[bytes], timeout: float = 5.0) -> dict[str, Any]:
    """The next message on ``sock`` (bounded)."""
    assert sock.poll(int(timeout * 1000)), "no answer"
    doc = orjson.loads(sock.recv())
    assert isinstance(doc, dict)
    return doc


def still_serving(endpoint: str) -> None:
    """The sentinel: a fresh, well-formed ``list`` is answered."""
    assert request(endpoint, {"v": 1, "op": "list", "service": None}, None, 5.0)["ok"] is True


def counted(broker: Broker, op: str, outcome: str) -> float:
    """``logfabric_broker_control_messages_total{op, outcome}`` as /metrics shows it."""
    return embedded_metrics(broker).get("logfabric_broker_control_messages_total", op=op, outcome=outcome) or 0.0


def hello(sock: zmq.Socket[bytes], service: str, pid: int = 1) -> None:
    """Say hello as a producer of ``service``."""
    doc = {"v": 1, "op": "hello", "service": service, "host": "h", "pid": pid, "producer": f"{pid:016x}"}
    sock.send(orjson.dumps(doc))


class TestConfig:
    """Control is refused unless operators are authenticated or the network is declared trusted."""

    @pytest.mark.parametrize(
        ("settings", "says"),
        [
            ({"control": "tcp://127.0.0.1:5560"}, "control refuses to run in plaintext"),
            ({"control_trust_network": True}, "which is off"),
            ({"curve_operators": "/nonexistent"}, "curve_operators needs CurveZMQ on"),
        ],
    )
    def test_refused_settings(self, settings: dict[str, Any], says: str) -> None:
        """Each refusal is one ConfigError saying what to do."""
        with pytest.raises(ConfigError, match=says):
            BrokerConfig(**settings)

    def test_curve_needs_an_operators_list_and_no_trust_flag(self, curve_keys: Any) -> None:
        """With CurveZMQ on, the operators allow-list decides; the trust flag would be a second, weaker door."""
        curve = {
            "curve_secret_key": str(curve_keys.broker_secret),
            "curve_producers": str(curve_keys.producers),
            "curve_subscribers": str(curve_keys.subscribers),
            "control": "tcp://127.0.0.1:5560",
        }
        with pytest.raises(ConfigError, match="needs curve_operators"):
            BrokerConfig(**curve)
        with pytest.raises(ConfigError, match="drop control_trust_network"):
            BrokerConfig(**curve, curve_operators=str(curve_keys.producers), control_trust_network=True)

    def test_the_service_exits_2_with_one_line(self) -> None:
        """`logfabric broker --control EP` without CURVE or the trust flag exits 2 and says how to fix it."""
        done = subprocess.run(
            [sys.executable, "-m", "broker", "--control", "tcp://127.0.0.1:0", "--http", "off"],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "--control-trust-network" in done.stderr


def test_malformed_messages_are_counted_and_commands_answered(
    control_broker: tuple[Broker, str], dealers: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """Not JSON, not an object, another version, an unknown op, several frames, a frame over 64 KiB."""
    broker, endpoint = control_broker
    sock = dealers(endpoint)
    for junk in (b"not json", b"[1, 2]", b'{"v": 2, "op": "list"}', b'{"v": 1, "op": "format_disk"}'):
        sock.send(junk)
    sock.send_multipart([b'{"v": 1, "op": "list"}', b"second frame"])
    sock.send(orjson.dumps({"v": 2, "op": "set", "service": "x"}))  # a command: answered with the reason
    for _ in ("list", "set"):  # the two commands (of version 2) are answered with the reason
        reply = answer(sock)
        assert reply == {"v": 1, "ok": False, "error": "malformed", "message": reply["message"]}
        assert "version 1" in reply["message"]
    still_serving(endpoint)
    assert counted(broker, "other", "malformed") == 4
    assert counted(broker, "list", "malformed") == counted(broker, "set", "malformed") == 1

    huge = dealers(endpoint)
    huge.send(b"x" * (wire.MAX_MESSAGE + 1))  # libzmq drops the connection, the broker never sees it
    still_serving(endpoint)
    assert broker.control is not None and broker.control._thread.is_alive()


@pytest.mark.parametrize(
    ("doc", "code", "says"),
    [
        ({"level": "NOTALEVEL"}, "invalid", "unknown level 'NOTALEVEL'"),
        ({"level": -1}, "invalid", "a number from 0 to 50"),
        ({"duration": 10 * 365 * 86400}, "invalid", "from 1 second to 24 hours"),
        ({"duration": "forever"}, "invalid", "cannot read the duration"),
        ({"loggers": [f"l{i}" for i in range(65)]}, "too_many", "at most 64"),
        ({"loggers": ["x" * 300]}, "invalid", "at most 256"),
        ({"loggers": ["app\x1b[31m"]}, "invalid", "control characters"),
        ({"loggers": "app.db"}, "invalid", "a list of logger names"),
        ({"service": ""}, "invalid", "name the service"),
        ({"service": None}, "invalid", "service must be a string"),
        ({"wait": 3600}, "invalid", "wait must be a number of seconds from 0 to 10"),
    ],
    ids=lambda v: str(v)[:30] if not isinstance(v, dict) else next(iter(v)),
)
def test_bad_values_are_refused_with_what_to_do(
    control_broker: tuple[Broker, str], doc: dict[str, Any], code: str, says: str
) -> None:
    """Each bad field is refused before anything changes, with a reason that says what to do."""
    broker, endpoint = control_broker
    ask = {"v": 1, "op": "set", "service": "checkout", "level": 10, "loggers": ["app.db"], "duration": 60, **doc}
    reply = request(endpoint, ask, None, 5.0)
    assert (reply["ok"], reply["error"]) == (False, code)
    assert says in reply["message"]
    assert broker.control is not None and broker.control.changes == {}
    assert counted(broker, "set", code) == 1


def test_huge_level_and_a_million_logger_names(
    control_broker: tuple[Broker, str], dealers: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """A level of 10**30 is refused; 10**6 logger names never fit a message; the broker serves on."""
    broker, endpoint = control_broker
    sock = dealers(endpoint)
    sock.send(b'{"v": 1, "op": "set", "service": "s", "level": 1000000000000000000000000000000, "duration": 60}')
    reply = answer(sock)
    assert reply["ok"] is False and reply["error"] in ("malformed", "invalid")
    names = orjson.dumps({"v": 1, "op": "set", "service": "s", "level": 10, "loggers": [f"n{i}" for i in range(10**6)]})
    assert len(names) > wire.MAX_MESSAGE
    flood = dealers(endpoint)
    flood.send(names)
    still_serving(endpoint)
    assert broker.control is not None and broker.control.changes == {}


def test_a_flood_of_changes_is_rate_limited_and_bounded(
    control_broker: tuple[Broker, str], dealers: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """100 changes at once: a burst of 20 goes through, 80 are refused (rate_limited); producers see 20."""
    broker, endpoint = control_broker
    producer = dealers(endpoint)
    hello(producer, "checkout")
    assert broker.control is not None
    deadline = time.monotonic() + 5
    while not broker.control.producers and time.monotonic() < deadline:
        time.sleep(0.01)
    operator = dealers(endpoint)
    for i in range(100):
        ask = {"v": 1, "op": "set", "service": "checkout", "level": 10, "loggers": ["app.db"], "wait": 0}
        operator.send(orjson.dumps(ask | {"duration": 60 + i}))
    replies = [answer(operator) for _ in range(100)]
    assert sum(r["ok"] for r in replies) == control_module.BURST
    refused = [r for r in replies if not r["ok"]]
    assert {r["error"] for r in refused} == {"rate_limited"} and "try again shortly" in refused[0]["message"]
    sets = 0
    while producer.poll(200):
        sets += orjson.loads(producer.recv()).get("op") == "set"
    assert sets == control_module.BURST
    assert counted(broker, "set", "rate_limited") == 100 - control_module.BURST
    assert broker.control.changed_loggers == 1  # one logger, changed 20 times


def test_a_producer_that_never_answers_is_reported_and_counted(
    control_broker: tuple[Broker, str], dealers: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """The operator's answer comes when its wait runs out, naming the silent process; the broker counts it."""
    broker, endpoint = control_broker
    mute = dealers(endpoint)
    hello(mute, "checkout", pid=4242)
    assert broker.control is not None
    deadline = time.monotonic() + 5
    while not broker.control.producers and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    ask = {"v": 1, "op": "set", "service": "checkout", "level": 10, "duration": 60, "wait": 0.5}
    reply = request(endpoint, ask, None, 5.0)
    assert 0.4 <= time.monotonic() - started < 3.0
    assert (
        reply["ok"] is True
        and reply["applied"] == []
        and reply["missing"] == [{"host": "h", "pid": 4242, "producer": f"{4242:016x}"}]
    )
    assert embedded_metrics(broker).get("logfabric_broker_control_unanswered_total") == 1


def test_producers_beyond_the_bound_are_refused(
    control_broker: tuple[Broker, str],
    dealers: Callable[[str], zmq.Socket[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hellos past MAX_PRODUCERS are refused (too_many) and counted; those known stay known."""
    broker, endpoint = control_broker
    monkeypatch.setattr(control_module, "MAX_PRODUCERS", 3)
    socks = [dealers(endpoint) for _ in range(5)]
    for i, sock in enumerate(socks):
        hello(sock, "checkout", pid=i + 1)
    deadline = time.monotonic() + 5
    while counted(broker, "hello", "ok") + counted(broker, "hello", "too_many") < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (counted(broker, "hello", "ok"), counted(broker, "hello", "too_many")) == (3, 2)
    assert broker.control is not None and len(broker.control.producers) == 3


def test_bad_hellos_are_refused(
    control_broker: tuple[Broker, str], dealers: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """A hello with a name over the bound, a control character or a wrong type registers nothing."""
    broker, endpoint = control_broker
    sock = dealers(endpoint)
    for bad in ({"service": "s" * 1000}, {"host": "a\nb"}, {"pid": "1"}, {"active": list(range(100))}):
        doc = {"v": 1, "op": "hello", "service": "s", "host": "h", "pid": 1, "producer": "0" * 16, **bad}
        sock.send(orjson.dumps(doc))
    deadline = time.monotonic() + 5
    while counted(broker, "hello", "invalid") < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted(broker, "hello", "invalid") == 4
    assert broker.control is not None and broker.control.producers == {}
