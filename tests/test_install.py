"""End-to-end tests of fabric.install(): the one line a service adds."""

from __future__ import annotations

import json
import logging

import pytest

import fabric


@pytest.fixture
def installed(make_logger):
    """Install onto an isolated logger; every handler install() attached is closed at teardown."""
    loggers = []

    def install(*args, **kwargs):
        logger = kwargs.setdefault("logger", make_logger())
        loggers.append(logger if isinstance(logger, logging.Logger) else logging.getLogger(logger))
        return fabric.install(*args, **kwargs)

    yield install
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, fabric.ZmqHandler):
                logger.removeHandler(handler)
                handler.close()


@pytest.fixture
def no_fabric_env(monkeypatch):
    """Start each test without $LOGFABRIC_ENDPOINT and $LOGFABRIC_SERVICE."""
    monkeypatch.delenv("LOGFABRIC_ENDPOINT", raising=False)
    monkeypatch.delenv("LOGFABRIC_SERVICE", raising=False)
    return monkeypatch


class TestInstall:
    """install() attaches one working handler, configured from arguments or the environment."""

    def test_environment_supplies_endpoint_and_service(
        self, no_fabric_env, endpoint, make_listener, capture, installed
    ):
        """With no arguments, $LOGFABRIC_ENDPOINT is dialled and $LOGFABRIC_SERVICE becomes record.service."""
        no_fabric_env.setenv("LOGFABRIC_ENDPOINT", endpoint)
        no_fabric_env.setenv("LOGFABRIC_SERVICE", "env-svc")
        make_listener(endpoint, capture, mode="pull", bind=True)
        handler = installed()
        assert handler.endpoint == endpoint
        handler.handle(logging.makeLogRecord({"name": "app", "msg": "hi", "levelno": 20, "levelname": "INFO"}))
        assert capture.wait_for(1)
        (record,) = capture.records
        assert record.service == "env-svc"
        assert record.msg == "hi"

    def test_arguments_override_the_environment(
        self, no_fabric_env, endpoint, free_port, make_listener, capture, installed
    ):
        """An explicit endpoint and service win over $LOGFABRIC_ENDPOINT and $LOGFABRIC_SERVICE."""
        no_fabric_env.setenv("LOGFABRIC_ENDPOINT", f"tcp://127.0.0.1:{free_port()}")
        no_fabric_env.setenv("LOGFABRIC_SERVICE", "env-svc")
        make_listener(endpoint, capture, mode="pull", bind=True)
        handler = installed(endpoint, service="arg-svc")
        assert handler.endpoint == endpoint
        handler.handle(logging.makeLogRecord({"name": "app", "msg": "hi", "levelno": 20, "levelname": "INFO"}))
        assert capture.wait_for(1)
        assert capture.records[0].service == "arg-svc"

    def test_installing_twice_keeps_one_handler(
        self, no_fabric_env, endpoint, make_logger, make_listener, capture, installed
    ):
        """A second install() replaces (and closes) the first handler instead of adding another."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        logger = make_logger()
        first = installed(endpoint, logger=logger, service="one")
        second = installed(endpoint, logger=logger, service="two")
        zmq_handlers = [h for h in logger.handlers if isinstance(h, fabric.ZmqHandler)]
        assert zmq_handlers == [second]
        assert first is not second
        logger.info("once")
        assert capture.wait_for(1)
        first_records = [r for r in capture.records if r.service == "one"]
        assert first_records == []
        assert [(r.service, r.msg) for r in capture.records] == [("two", "once")]
        assert first.stats["sent"] == 0

    def test_install_by_logger_name_and_level(
        self, no_fabric_env, endpoint, make_logger, make_listener, capture, installed
    ):
        """logger='name' and level='WARNING' target that logger and set its level, so INFO is not shipped."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        logger = make_logger()
        handler = installed(endpoint, logger=logger.name, level="WARNING", service="lvl")
        assert handler in logger.handlers
        assert logger.level == logging.WARNING
        logger.info("not shipped")
        logger.warning("shipped")
        assert capture.wait_for(1)
        assert [r.msg for r in capture.records] == ["shipped"]
        assert handler.stats["sent"] == 1

    def test_handler_options_pass_through(self, no_fabric_env, endpoint, make_listener, capture, installed):
        """Extra keyword arguments configure the handler (pub mode and the json codec here)."""
        make_listener(endpoint, capture, mode="sub", bind=True)
        handler = installed(endpoint, mode="pub", codec="json", service="opts")
        assert (handler.mode, handler.codec) == ("pub", "json")
        assert handler.wait_ready(5.0)
        handler.handle(logging.makeLogRecord({"name": "app", "msg": "via pub", "levelno": 30, "levelname": "WARNING"}))
        assert capture.wait_for(1)
        assert capture.records[0].msg == "via pub"

    def test_no_endpoint_anywhere_raises(self, no_fabric_env, make_logger):
        """Without an argument or $LOGFABRIC_ENDPOINT, install() raises a fabric.ConfigError naming the variable."""
        logger = make_logger()
        with pytest.raises(fabric.ConfigError, match="LOGFABRIC_ENDPOINT"):
            fabric.install(logger=logger)
        assert logger.handlers == []

    def test_bad_endpoint_in_environment_raises(self, no_fabric_env, make_logger):
        """A malformed $LOGFABRIC_ENDPOINT raises fabric.ConfigError and attaches nothing."""
        no_fabric_env.setenv("LOGFABRIC_ENDPOINT", "broker:5557")
        logger = make_logger()
        with pytest.raises(fabric.ConfigError, match="broker:5557"):
            fabric.install(logger=logger)
        assert logger.handlers == []

    @pytest.mark.parametrize("logger", ["", "svc.module"], ids=["root-logger", "named-logger"])
    def test_subprocess_configured_only_by_environment(self, logger, endpoint, helpers, make_listener, capture):
        """A process that calls install() with no endpoint ships its records, tagged with $LOGFABRIC_SERVICE."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        env = helpers.env(LOGFABRIC_ENDPOINT=endpoint, LOGFABRIC_SERVICE="from-env")
        proc = helpers.start("-", 50, "--setup", "install", "--logger", logger, "--end", "exit", env=env)
        report = json.loads(helpers.finish(proc))
        assert report["service"] == "from-env"
        assert capture.wait_for(50)
        assert [r.n for r in capture.records] == list(range(50))
        assert {r.service for r in capture.records} == {"from-env"}
        assert {r.process for r in capture.records} == {report["pid"]}
        assert {r.name for r in capture.records} == {logger or "root"}
