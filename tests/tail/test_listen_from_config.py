"""``fabric.listen_from_config``: a dictConfig file plus a "listener" section gives a started ZmqListener.

The listener runs in this process, subscribed to a real broker; its dictConfig
is contained by ``tail_logging_sandbox`` (via ``tail_listen``). Producers send
hand-made records (no local logger of the record's name exists, so routing
through the local logging tree never loops back into a producer).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import pytest

import fabric
from tests.helpers import waiting
from tests.helpers.waiting import wait_until

FORMAT = "%(name)s|%(levelname)s|%(service)s|%(message)s"


def make_config(egress: str, root_file: Path, **listener: object) -> dict[str, object]:
    """A dictConfig with a root file handler and a listener section subscribed to ``egress``."""
    return {
        "version": 1,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(root_file), "formatter": "plain"},
        },
        "root": {"level": "DEBUG", "handlers": ["file"]},
        "listener": {"endpoints": [egress], **listener},
    }


def lines(path: Path) -> list[str]:
    """The complete lines of a log file written by another thread (none if it does not exist yet)."""
    if not path.exists():
        return []
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()


def stream_until(emit, done, timeout: float = 15.0) -> int:
    """Call ``emit(0)``, ``emit(1)``, ... every 10 ms until ``done()`` (bounded); return how many calls were made."""
    sent = waiting.stream_until(emit, done, timeout)
    assert done(), f"condition not reached within {timeout} s ({sent} emitted)"
    return sent


class TestListenFromConfig:
    """A valid configuration: local logging configured, listener started and delivering."""

    def test_returns_a_started_listener_feeding_the_root_handler(
        self, tail_listen, tail_producer, tail_broker, tmp_path
    ):
        """The returned ZmqListener already runs; by default records go through the local logger tree."""
        root_file = tmp_path / "root.log"
        listener = tail_listen(make_config(tail_broker.endpoints["egress"], root_file))
        assert isinstance(listener, fabric.ZmqListener)
        producer = tail_producer()
        name = f"{producer.prefix}.app"
        stream_until(lambda i: producer.send(name, f"hello {i}"), lambda: len(lines(root_file)) >= 3)
        for line in lines(root_file):
            got_name, level, service, message = line.split("|")
            assert (got_name, level, service) == (name, "INFO", producer.service)
            assert message.startswith("hello ")
        assert listener.stats["received"] >= 3
        with pytest.raises(RuntimeError, match="already started"):
            listener.start()

    def test_handlers_setting_sends_records_straight_to_named_handlers(
        self, tail_listen, tail_producer, tail_broker, tmp_path
    ):
        """ "handlers": ["direct"] delivers to that handler (its level respected), not through the root logger."""
        root_file, direct_file = tmp_path / "root.log", tmp_path / "direct.log"
        config = make_config(tail_broker.endpoints["egress"], root_file, handlers=["direct"])
        config["handlers"]["direct"] = {  # type: ignore[index]
            "class": "logging.FileHandler",
            "filename": str(direct_file),
            "formatter": "plain",
            "level": "WARNING",
        }
        tail_listen(config)
        producer = tail_producer()
        name = f"{producer.prefix}.app"

        def emit(i: int) -> None:
            producer.send(name, f"info {i}", logging.INFO)
            producer.send(name, f"warning {i}", logging.WARNING)

        stream_until(emit, lambda: len(lines(direct_file)) >= 3)
        assert all(line.split("|")[1] == "WARNING" for line in lines(direct_file)), lines(direct_file)
        assert lines(root_file) == []

    def test_configured_loggers_route_their_subtree(
        self, tail_listen, tail_producer, tail_unique, tail_broker, tmp_path
    ):
        """A logger configured with its own handler (propagate off) gets its subtree; other names reach the root."""
        root_file, special_file = tmp_path / "root.log", tmp_path / "special.log"
        prefix = tail_unique()
        config = make_config(tail_broker.endpoints["egress"], root_file)
        config["handlers"]["special"] = {"class": "logging.FileHandler", "filename": str(special_file)}  # type: ignore[index]
        config["loggers"] = {f"{prefix}.special": {"handlers": ["special"], "propagate": False}}
        tail_listen(config)
        producer = tail_producer(prefix=prefix)

        def emit(i: int) -> None:
            producer.send(f"{prefix}.special.worker", f"special {i}")
            producer.send(f"{prefix}.other", f"other {i}")

        stream_until(emit, lambda: len(lines(special_file)) >= 2 and len(lines(root_file)) >= 2)
        assert all(line.startswith("special ") for line in lines(special_file)), lines(special_file)
        assert all(line.startswith(f"{prefix}.other|") for line in lines(root_file)), lines(root_file)

    def test_listener_filter_settings_apply(self, tail_listen, tail_producer, tail_unique, tail_broker, tmp_path):
        """ "level", "loggers" and "services" in the listener section filter what is delivered."""
        root_file = tmp_path / "root.log"
        wanted, prefix = tail_unique("svc"), tail_unique()
        config = make_config(
            tail_broker.endpoints["egress"], root_file, level="WARNING", loggers=[f"{prefix}.keep"], services=[wanted]
        )
        tail_listen(config)
        keep, other = tail_producer(service=wanted, prefix=prefix), tail_producer(prefix=prefix)

        def emit(i: int) -> None:
            keep.send(f"{prefix}.keep.db", f"a {i}", logging.INFO)
            keep.send(f"{prefix}.drop", f"b {i}", logging.ERROR)
            other.send(f"{prefix}.keep", f"c {i}", logging.ERROR)
            keep.send(f"{prefix}.keep", f"d {i}", logging.WARNING)

        stream_until(emit, lambda: len(lines(root_file)) >= 4)
        assert {line.split("|")[0] for line in lines(root_file)} == {f"{prefix}.keep"}
        assert {tuple(line.split("|")[1:3]) for line in lines(root_file)} == {("WARNING", wanted)}

    @pytest.mark.parametrize("kind", [str, Path])
    def test_json_file_path(self, tail_listen, tail_producer, tail_broker, tmp_path, kind):
        """A path (str or Path) to a JSON file holding the configuration works like the dict."""
        root_file = tmp_path / "root.log"
        path = tmp_path / "listen.json"
        path.write_text(json.dumps(make_config(tail_broker.endpoints["egress"], root_file)))
        listener = tail_listen(kind(path))
        assert isinstance(listener, fabric.ZmqListener)
        producer = tail_producer()
        stream_until(lambda i: producer.send(f"{producer.prefix}.app", f"file {i}"), lambda: lines(root_file))
        assert lines(root_file)[0].split("|")[3].startswith("file ")

    def test_keyword_overrides_replace_listener_settings(self, tail_listen, tail_producer, tail_broker, tmp_path):
        """Keyword arguments replace the listener section's keys (here the endpoints and the level)."""
        root_file = tmp_path / "root.log"
        config = make_config("tcp://127.0.0.1:9", root_file, level="DEBUG")
        tail_listen(config, endpoints=[tail_broker.endpoints["egress"]], level="ERROR")
        producer = tail_producer()

        def emit(i: int) -> None:
            producer.send(f"{producer.prefix}.app", f"w {i}", logging.WARNING)
            producer.send(f"{producer.prefix}.app", f"e {i}", logging.ERROR)

        stream_until(emit, lambda: len(lines(root_file)) >= 2)
        assert {line.split("|")[1] for line in lines(root_file)} == {"ERROR"}

    def test_the_callers_mapping_is_left_unchanged(self, tail_listen, tail_broker, tmp_path):
        """The dict passed in still holds its listener section afterwards, so it can be reused."""
        config = make_config(tail_broker.endpoints["egress"], tmp_path / "root.log")
        before = copy.deepcopy(config)
        tail_listen(config)
        assert config == before


class TestListenFromConfigErrors:
    """An unusable configuration raises fabric.ConfigError (a ValueError) with a one-line reason."""

    def test_config_error_is_a_value_error(self):
        """ConfigError is exported by fabric and subclasses ValueError."""
        assert issubclass(fabric.ConfigError, ValueError)

    def test_unknown_listener_setting_is_rejected_before_logging_changes(self, tail_listen, tail_broker, tmp_path):
        """Unknown listener keys are named in the error, and the logging configuration is not applied."""
        root = logging.getLogger()
        before = list(root.handlers)
        config = make_config(tail_broker.endpoints["egress"], tmp_path / "root.log", levle="INFO", bogus=1)
        with pytest.raises(fabric.ConfigError, match="bogus, levle") as info:
            tail_listen(config)
        assert "\n" not in str(info.value)
        assert root.handlers == before
        assert not (tmp_path / "root.log").exists()

    @pytest.mark.parametrize("section", [None, {}, {"level": "INFO"}], ids=["no-section", "empty", "no-endpoints"])
    def test_missing_endpoints(self, tail_listen, tmp_path, section):
        """A config without listener endpoints is rejected with a message naming "endpoints"."""
        config = make_config("tcp://127.0.0.1:9", tmp_path / "root.log")
        if section is None:
            del config["listener"]
        else:
            config["listener"] = section
        with pytest.raises(fabric.ConfigError, match="endpoints"):
            tail_listen(config)

    def test_undefined_handler_name(self, tail_listen, tail_broker, tmp_path):
        """ "handlers" naming a handler the config does not define is rejected, naming it."""
        config = make_config(tail_broker.endpoints["egress"], tmp_path / "root.log", handlers=["file", "nope"])
        with pytest.raises(fabric.ConfigError, match="nope"):
            tail_listen(config)

    @pytest.mark.parametrize(
        ("setting", "mentions"),
        [
            ({"endpoints": ["foo"]}, "invalid endpoint 'foo'"),
            ({"endpoints": ["tcp://"]}, "invalid endpoint"),
            ({"level": "NOPE"}, "unknown level 'NOPE'"),
            ({"mode": "bogus"}, "unknown mode"),
            ({"dispatch": "bogus"}, "unknown dispatch"),
        ],
        ids=["endpoint-foo", "endpoint-tcp", "level", "mode", "dispatch"],
    )
    def test_bad_listener_value(self, tail_listen, tail_broker, tmp_path, setting, mentions):
        """A listener value ZmqListener refuses becomes a ConfigError with ZmqListener's reason."""
        config = make_config(tail_broker.endpoints["egress"], tmp_path / "root.log")
        config["listener"].update(setting)  # type: ignore[attr-defined]
        with pytest.raises(fabric.ConfigError, match=mentions):
            tail_listen(config)

    def test_missing_file(self, tail_listen, tmp_path):
        """A configuration file that does not exist is a ConfigError naming it."""
        with pytest.raises(fabric.ConfigError, match="cannot read"):
            tail_listen(tmp_path / "absent.json")

    @pytest.mark.parametrize(
        ("text", "mentions"),
        [("{not json", "not valid JSON"), ("[1, 2]", "must hold a mapping")],
        ids=["invalid-json", "not-a-mapping"],
    )
    def test_unusable_json_file(self, tail_listen, tmp_path, text, mentions):
        """A JSON file that is invalid or not an object is a ConfigError."""
        path = tmp_path / "listen.json"
        path.write_text(text)
        with pytest.raises(fabric.ConfigError, match=mentions):
            tail_listen(path)

    def test_ini_file_is_refused(self, tail_listen, tmp_path):
        """An INI file cannot hold a listener section: ConfigError asking for a dictConfig mapping."""
        path = tmp_path / "listen.ini"
        path.write_text("[loggers]\nkeys=root\n")
        with pytest.raises(fabric.ConfigError, match="not an INI file"):
            tail_listen(path)

    def test_invalid_logging_configuration(self, tail_listen, tail_broker, tmp_path):
        """A dictConfig that logging rejects is a ConfigError, not logging's own ValueError chain."""
        config = make_config(tail_broker.endpoints["egress"], tmp_path / "root.log")
        config["handlers"]["file"]["class"] = "no.such.Handler"  # type: ignore[index]
        with pytest.raises(fabric.ConfigError, match="invalid logging configuration"):
            tail_listen(config)


class TestListenerOptionsFromFile:
    """Every ZmqListener option a file can hold takes effect through listen_from_config."""

    def test_limits_from_the_file_truncate_a_long_message(self, tail_listen, tail_producer, tail_broker, tmp_path):
        """ "limits": {"message": 10} cuts a 100-character message to 10 characters plus the marker."""
        root_file = tmp_path / "root.log"
        listener = tail_listen(make_config(tail_broker.endpoints["egress"], root_file, limits={"message": 10}))
        producer = tail_producer()
        stream_until(lambda i: producer.send(f"{producer.prefix}.app", "x" * 100), lambda: lines(root_file))
        message = lines(root_file)[0].split("|")[3]
        assert message == "x" * 10 + "... [logfabric: truncated 90 chars]"
        assert listener.stats["truncated"] >= 1

    def test_limits_and_resolve_interval_from_a_json_file(self, tail_listen, tail_producer, tail_broker, tmp_path):
        """A JSON file's "resolve_interval": 0.1 re-resolves a dns+tcp:// name about ten times a second."""
        root_file = tmp_path / "root.log"
        port = tail_broker.endpoints["egress"].rsplit(":", 1)[1]
        path = tmp_path / "listen.json"
        config = make_config(f"dns+tcp://brokers.test:{port}", root_file, resolve_interval=0.1)
        config["listener"]["limits"] = {"field": 8}  # type: ignore[index]
        path.write_text(json.dumps(config))
        calls: list[float] = []

        def resolver(host: str, port: int) -> list[str]:
            calls.append(time.monotonic())
            return ["127.0.0.1"]

        tail_listen(path, resolver=resolver)  # a callable cannot be in a file: it comes as a keyword
        producer = tail_producer(service="a-service-name-longer-than-eight")
        stream_until(lambda i: producer.send(f"{producer.prefix}.app", f"r {i}"), lambda: lines(root_file))
        assert lines(root_file)[0].split("|")[2].startswith("a-servic... [logfabric: truncated")
        # At the default 10 s interval there would be one resolution (at start) in these 5 s.
        assert wait_until(lambda: len(calls) >= 6, 5.0), f"{len(calls)} resolutions: resolve_interval was not applied"
