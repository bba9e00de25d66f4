"""CURVE configuration: client options and variables, dictConfig, listen_from_config, tail, broker settings, errors."""

from __future__ import annotations

import logging
import logging.config
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker, BrokerConfig, ConfigError
from broker.cli import main as broker_main
from fabric import tail
from fabric.curve import ENV_CLIENT_KEY, ENV_SERVER_KEY, CurveError, client_keys
from tests.helpers.broker import Metrics, auth_refused
from tests.helpers.capture import PROBE, Capture, emit, probe_until, send_sentinel
from tests.helpers.keys import KeySet
from tests.helpers.net import ROOT, http_get
from tests.helpers.waiting import poll_until, send_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_curve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without LOGFABRIC_CURVE_* set, whatever the calling shell has."""
    monkeypatch.delenv(ENV_SERVER_KEY, raising=False)
    monkeypatch.delenv(ENV_CLIENT_KEY, raising=False)


# --------------------------------------------------------------------------- clients


def test_environment_configures_handler_and_listener(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only LOGFABRIC_CURVE_SERVER_KEY / _CLIENT_KEY set, a handler and a listener connect with CURVE."""
    broker = start_curve_broker()
    monkeypatch.setenv(ENV_SERVER_KEY, str(curve_keys.broker_public))
    monkeypatch.setenv(ENV_CLIENT_KEY, str(curve_keys.subscriber))
    capture = make_capture()
    listener = make_listener(broker.endpoints["egress"], capture)
    monkeypatch.setenv(ENV_CLIENT_KEY, str(curve_keys.producer))
    handler = make_handler(broker.endpoints["push_ingest"])
    assert handler.curve is not None and listener.curve is not None
    assert handler.curve.public != listener.curve.public
    probe_until(handler, lambda: len(capture.named(PROBE)))
    emit(handler, "sec.data", "via the environment")
    assert poll_until(lambda: len(capture.named("sec.data")) == 1, timeout=10)


def test_options_win_over_the_environment(curve_keys: KeySet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit paths are used even when the variables point elsewhere."""
    monkeypatch.setenv(ENV_SERVER_KEY, "/nonexistent/broker.key")
    monkeypatch.setenv(ENV_CLIENT_KEY, "/nonexistent/me.key_secret")
    keys = client_keys(curve_keys.broker_public, curve_keys.producer)
    assert keys is not None and keys.public == fabric.curve.load_key_pair(curve_keys.producer)[0]


def test_no_keys_no_curve() -> None:
    """Without options and variables the sockets stay plaintext (CURVE is opt-in)."""
    assert client_keys() is None
    handler = fabric.ZmqHandler("tcp://127.0.0.1:1")
    try:
        assert handler.curve is None
    finally:
        handler.close()


@pytest.mark.parametrize("which", [ENV_SERVER_KEY, ENV_CLIENT_KEY])
def test_half_the_environment_is_an_error(curve_keys: KeySet, monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    """One variable without the other fails, naming the missing one, instead of falling back to plaintext."""
    monkeypatch.setenv(which, str(curve_keys.broker_public))
    other = ENV_CLIENT_KEY if which == ENV_SERVER_KEY else ENV_SERVER_KEY
    with pytest.raises(CurveError, match=f"{which} is set but {other} is not"):
        fabric.ZmqHandler("tcp://127.0.0.1:1")


def test_half_the_options_is_an_error(curve_keys: KeySet) -> None:
    """curve_server_key without curve_client_key (and the reverse) fails, naming the missing option."""
    with pytest.raises(CurveError, match="curve_client_key is missing"):
        fabric.ZmqListener("tcp://127.0.0.1:1", curve_server_key=str(curve_keys.broker_public))
    with pytest.raises(CurveError, match="curve_server_key is missing"):
        fabric.subscribe("tcp://127.0.0.1:1", curve_client_key=str(curve_keys.producer))


def _clear_errors(keys: Any, tmp_path: Path) -> list[tuple[dict[str, str], str]]:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello\n")
    short = tmp_path / "short.key"
    short.write_text('curve\n    public-key = "abc"\n')
    public_of_producer = keys.producer.with_name("producer.key")
    return [
        ({"curve_server_key": str(tmp_path / "nope.key")}, "does not exist; create a key pair with 'logfabric keys"),
        ({"curve_server_key": str(garbage)}, "is not a CURVE key file"),
        ({"curve_server_key": str(short)}, "malformed public key: expected 40 z85 characters"),
        ({"curve_server_key": str(keys.broker_secret)}, r"holds a secret key; pass the public file \(.*broker.key\)"),
        ({"curve_server_key": str(tmp_path)}, "is a directory; name the key file itself"),
        ({"curve_client_key": str(public_of_producer)}, r"holds only a public key; pass the secret key file"),
        ({"curve_client_key": ""}, "an empty path was given"),
    ]


def test_clear_errors(curve_keys: KeySet, tmp_path: Path) -> None:
    """Each unusable key file raises a CurveError (a ValueError) that says what to do."""
    for change, message in _clear_errors(curve_keys, tmp_path):
        options = {**curve_keys.client(curve_keys.producer), **change}
        for build in (
            lambda o: fabric.ZmqHandler("tcp://127.0.0.1:1", **o),
            lambda o: fabric.ZmqListener("tcp://127.0.0.1:1", **o),
            lambda o: fabric.subscribe("tcp://127.0.0.1:1", **o),
        ):
            with pytest.raises(CurveError, match=message):
                build(options)


def test_curve_on_a_bound_socket_is_refused(curve_keys: KeySet, tmp_path: Path) -> None:
    """A binding handler or listener with client keys is refused with advice (only the broker is a CURVE server)."""
    options = curve_keys.client(curve_keys.producer)
    with pytest.raises(CurveError, match="a socket that binds would have to be the server"):
        fabric.ZmqHandler("tcp://127.0.0.1:*", bind=True, **options)
    listener = fabric.ZmqListener("tcp://127.0.0.1:*", bind=True, mode="pull", **options)
    with pytest.raises(CurveError, match="a socket that binds"):
        listener.start()


def test_dictconfig_handler_with_curve(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """dictConfig builds a CURVE ZmqHandler from plain strings, and its records arrive."""
    broker = start_curve_broker()
    capture = make_capture()
    make_listener(broker.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    name = "sec.dictconfig"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "fabric": {
                    "class": "fabric.ZmqHandler",
                    "endpoint": broker.endpoints["push_ingest"],
                    "curve_server_key": str(curve_keys.broker_public),
                    "curve_client_key": str(curve_keys.producer),
                    "linger": 1.0,
                }
            },
            "loggers": {name: {"handlers": ["fabric"], "level": "DEBUG", "propagate": False}},
        }
    )
    logger = logging.getLogger(name)
    handler = logger.handlers[0]
    try:
        assert isinstance(handler, fabric.ZmqHandler) and handler.curve is not None
        probe_until(handler, lambda: len(capture.named(PROBE)))
        logger.warning("configured by dictConfig")
        assert poll_until(lambda: len(capture.named(name)) == 1, timeout=10)
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_listen_from_config_with_curve(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_capture: Callable[..., Capture],
) -> None:
    """The "listener" section takes curve_server_key / curve_client_key; a bad key is a one-line ConfigError."""
    broker = start_curve_broker()
    capture = make_capture()
    logging.getLogger("sec.cfg").addHandler(capture)
    config: dict[str, Any] = {
        "version": 1,
        "listener": {
            "endpoints": [broker.endpoints["egress"]],
            "curve_server_key": str(curve_keys.broker_public),
            "curve_client_key": str(curve_keys.subscriber),
        },
    }
    listener = fabric.listen_from_config(dict(config))
    try:
        assert listener.curve is not None
        handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
        send_until(lambda _: emit(handler, "sec.cfg", "from a config file"), lambda: capture.named("sec.cfg"))
        assert capture.named("sec.cfg")
    finally:
        listener.stop()
        logging.getLogger("sec.cfg").removeHandler(capture)
    bad = {**config, "listener": {**config["listener"], "curve_client_key": str(curve_keys.broker_public)}}
    with pytest.raises(fabric.ConfigError, match="holds only a public key"):
        fabric.listen_from_config(bad)


def test_tail_with_curve_flags(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`logfabric tail --curve-server-key --curve-client-key` prints records from a CURVE broker."""
    import threading

    broker = start_curve_broker()
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    stop = threading.Event()

    def keep_logging() -> None:
        n = 0
        while not stop.wait(0.02):  # a record every 20 ms until the tail is done
            emit(handler, "sec.tail", f"tail me {n}")
            n += 1

    feeder = threading.Thread(target=keep_logging, daemon=True)
    feeder.start()
    try:
        status = tail.main(
            [
                broker.endpoints["egress"],
                "--curve-server-key",
                str(curve_keys.broker_public),
                "--curve-client-key",
                str(curve_keys.subscriber),
                "--count",
                "3",
                "--timeout",
                "10",
                "--color",
                "never",
            ]
        )
    finally:
        stop.set()
        feeder.join(5)
    out = capsys.readouterr()
    assert status == 0, out.err
    assert out.out.count("tail me") == 3


def test_tail_bad_key_exits_2(curve_keys: KeySet, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """tail with a missing key file exits 2 with one line naming the file, no traceback."""
    status = tail.main(["tcp://127.0.0.1:1", "--curve-server-key", str(tmp_path / "x.key"), "--curve-client-key", "y"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "x.key" in err and "does not exist" in err


# --------------------------------------------------------------------------- broker


def test_broker_config_from_flags_env_and_file(curve_keys: KeySet, tmp_path: Path) -> None:
    """The five CURVE settings load from a file, LOGFABRIC_BROKER_* variables and flags, later winning."""
    config_file = tmp_path / "broker.toml"
    config_file.write_text(
        f'curve_secret_key = "{curve_keys.broker_secret}"\n'
        f'curve_producers = "{curve_keys.producers}"\n'
        f'curve-subscribers = "/from/file"\n'
    )
    env = {"LOGFABRIC_BROKER_CURVE_SUBSCRIBERS": str(curve_keys.subscribers), "LOGFABRIC_BROKER_UPSTREAM": ""}
    config = BrokerConfig.load(config_file, env=env)
    assert config.curve and config.curve_subscribers == str(curve_keys.subscribers)
    assert config.curve_producers == str(curve_keys.producers)
    flagged = BrokerConfig.load(config_file, env=env, curve_producers="/from/flag")
    assert flagged.curve_producers == "/from/flag"
    empty = BrokerConfig.load(env={"LOGFABRIC_BROKER_CURVE_SECRET_KEY": ""})
    assert empty.curve is False


def test_broker_curve_settings_come_together(curve_keys: KeySet) -> None:
    """A secret key without both allow-lists (or the reverse) is refused, naming what is missing."""
    with pytest.raises(ConfigError, match="missing: curve_producers, curve_subscribers"):
        BrokerConfig(curve_secret_key=str(curve_keys.broker_secret))
    with pytest.raises(ConfigError, match="missing: curve_secret_key"):
        BrokerConfig(curve_producers=str(curve_keys.producers), curve_subscribers=str(curve_keys.subscribers))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"curve_secret_key": "broker_public"}, "holds only a public key"),
        ({"curve_producers": "missing_dir"}, "producers allow-list .* is not a directory"),
        ({"curve_subscribers": "a_file"}, "subscribers allow-list .* is not a directory"),
        ({"curve_producers": "garbage_dir"}, "cannot read the producers allow-list .*: No public key found"),
    ],
)
def test_broker_cli_bad_keys_exit_2(
    curve_keys: KeySet, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    """`logfabric broker` with an unusable key or allow-list exits 2 with one line saying what is wrong."""
    paths = {
        "broker_public": str(curve_keys.broker_public),
        "missing_dir": str(tmp_path / "nowhere"),
        "a_file": str(curve_keys.broker_public),
        "garbage_dir": str(tmp_path / "garbage"),
    }
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "notes.key").write_text("not a key\n")
    settings = {
        "curve_secret_key": str(curve_keys.broker_secret),
        "curve_producers": str(curve_keys.producers),
        "curve_subscribers": str(curve_keys.subscribers),
    }
    settings.update({k: paths[v] for k, v in change.items()})
    argv = ["--http", "off", "--pub-ingest", "tcp://127.0.0.1:*", "--push-ingest", "tcp://127.0.0.1:*"]
    argv += ["--egress", "tcp://127.0.0.1:*"]
    for key, value in settings.items():
        argv += ["--" + key.replace("_", "-"), value]
    assert broker_main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("logfabric broker:")]
    assert len(lines) == 1 and re.search(message, lines[0]), err


def test_allow_list_changes_apply_without_a_restart(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """A key copied into the allow-list is accepted on the next connection; a removed key is refused again."""
    broker = start_curve_broker()
    capture = make_capture()
    make_listener(broker.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    newcomer = curve_keys.pair("newcomer")
    curve_keys.allow(curve_keys.producers, newcomer)
    assert broker.allowed_keys()["producers"] == 1  # not read yet: the next handshake looks
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(newcomer))
    probe_until(handler, lambda: len(capture.named(PROBE)))
    assert broker.allowed_keys()["producers"] == 2
    (curve_keys.producers / "newcomer.key").unlink()
    time.sleep(1.1)  # a listed key is re-checked at most once a second
    again = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(newcomer))
    before = auth_refused(broker, "push_ingest", "unknown_key")
    emit(again, "sec.data", "after removal")
    assert poll_until(lambda: auth_refused(broker, "push_ingest", "unknown_key") > before, timeout=10)
    assert broker.allowed_keys()["producers"] == 1


def test_broker_process_from_environment(curve_keys: KeySet, tmp_path: Path) -> None:
    """`python -m broker` configured only by LOGFABRIC_BROKER_CURVE_* variables serves CURVE and refuses plaintext."""
    import socket as _socket

    ports = []
    held = []
    for _ in range(4):
        s = _socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
        ports.append(s.getsockname()[1])
    for s in held:
        s.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFABRIC_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LOGFABRIC_BROKER_PUB_INGEST=f"tcp://127.0.0.1:{ports[0]}",
        LOGFABRIC_BROKER_PUSH_INGEST=f"tcp://127.0.0.1:{ports[1]}",
        LOGFABRIC_BROKER_EGRESS=f"tcp://127.0.0.1:{ports[2]}",
        LOGFABRIC_BROKER_HTTP=f"127.0.0.1:{ports[3]}",
        LOGFABRIC_BROKER_CURVE_SECRET_KEY=str(curve_keys.broker_secret),
        LOGFABRIC_BROKER_CURVE_PRODUCERS=str(curve_keys.producers),
        LOGFABRIC_BROKER_CURVE_SUBSCRIBERS=str(curve_keys.subscribers),
    )
    stderr = tmp_path / "broker.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    handlers: list[fabric.ZmqHandler] = []
    listener = None
    try:

        def metrics() -> Metrics:
            status, body = http_get(f"127.0.0.1:{ports[3]}", "/metrics", timeout=5)
            assert status == 200, body[:200]
            return Metrics(body)

        def ready() -> bool:
            try:
                return metrics().get("logfabric_broker_ready") == 1
            except OSError:
                return False

        assert poll_until(ready, timeout=20), stderr.read_text()
        capture = Capture()
        listener = fabric.ZmqListener(
            f"tcp://127.0.0.1:{ports[2]}", capture, **curve_keys.client(curve_keys.subscriber)
        )
        listener.start()
        good = fabric.ZmqHandler(f"tcp://127.0.0.1:{ports[1]}", linger=0.5, **curve_keys.client(curve_keys.producer))
        plain = fabric.ZmqHandler(f"tcp://127.0.0.1:{ports[1]}", linger=0.0)
        handlers += [good, plain]
        probe_until(good, lambda: capture.count(PROBE))
        for i in range(20):
            emit(plain, "sec.plain", f"plain {i}")
        refused = "logfabric_broker_auth_refused_total"
        assert poll_until(
            lambda: sum(metrics().total(refused, reason=r, socket="push_ingest") for r in ("plaintext", "aborted")) >= 1
        )
        # the plaintext producer's records would be ahead of a sentinel from the same ingest
        send_sentinel(good, [capture])
        assert capture.count("sec.plain") == 0
        assert metrics().get("logfabric_broker_curve_allowed_keys", list="producers") == 1
    finally:
        for h in handlers:
            h.close()
        if listener is not None:
            listener.stop()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log = stderr.read_text()
    assert "producers allow-list" in log and "on push_ingest (" in log


def test_tail_help_lists_the_curve_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """`logfabric tail --help` exits 0 and documents both CURVE flags and their variables."""
    with pytest.raises(SystemExit) as exited:
        tail.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "--curve-server-key" in out and ENV_SERVER_KEY in out
    assert "--curve-client-key" in out and ENV_CLIENT_KEY in out
    assert "%(asctime)s" in out  # the default format shows literally
