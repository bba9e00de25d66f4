"""The dictConfig forms of ZmqHandler on every supported Python, including 3.12.0-3.12.3."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import fabric
from fabric import _dictconfig
from tests.helpers.net import child_env

# A fresh interpreter in which dictConfig itself imports fabric for the first
# time, while it resolves "fabric.ZmqHandler" (as Django, gunicorn and uvicorn do).
_FIRST_IMPORT_BY_DICTCONFIG = textwrap.dedent(
    """
    import logging, logging.config, sys
    assert "fabric" not in sys.modules
    logging.config.dictConfig({
        "version": 1,
        "handlers": {"zmq": {"class": "fabric.ZmqHandler", "endpoint": sys.argv[1], "service": "first-import"}},
        "root": {"handlers": ["zmq"], "level": "INFO"},
    })
    for n in range(5):
        logging.getLogger("app").info("record %d", n)
    """
)


def _config(endpoint: str, **entry: object) -> dict[str, object]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"zmq": {"class": "fabric.ZmqHandler", "endpoint": endpoint, **entry}},
        "loggers": {"dictconfig-test": {"handlers": ["zmq"], "level": "INFO", "propagate": False}},
    }


@pytest.fixture
def restore_logging():
    """Undo what a test's dictConfig did to the logger it configures."""
    yield
    logger = logging.getLogger("dictconfig-test")
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()


class TestClassForm:
    """``"class": "fabric.ZmqHandler"`` with options, as the README shows it."""

    def test_first_import_of_fabric_by_dictconfig_delivers(self, endpoint, make_listener, capture):
        """dictConfig that imports fabric itself builds the handler with its options; all 5 records arrive."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        result = subprocess.run(
            [sys.executable, "-c", _FIRST_IMPORT_BY_DICTCONFIG, endpoint],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert capture.wait_for(5), f"{len(capture)} of 5 arrived"
        assert [r.getMessage() for r in capture.records] == [f"record {n}" for n in range(5)]
        assert {r.service for r in capture.records} == {"first-import"}

    def test_options_reach_the_handler(self, endpoint, restore_logging):
        """Every option of the entry is applied (none dropped, as 3.12.0-3.12.3 would)."""
        logging.config.dictConfig(_config(endpoint, service="opts", codec="json", linger=0.25, level="WARNING"))
        (handler,) = logging.getLogger("dictconfig-test").handlers
        assert isinstance(handler, fabric.ZmqHandler)
        assert (handler.endpoint, handler.service, handler.codec, handler.linger) == (endpoint, "opts", "json", 0.25)
        assert handler.level == logging.WARNING


class QueueHandlerProbe(logging.handlers.QueueHandler):
    """A ``QueueHandler`` subclass that keeps the keyword options ``dictConfig`` gave it."""

    def __init__(self, queue: Any = None, **options: Any) -> None:
        super().__init__(queue)
        self.options = options


def stdlib_passes_queue_handler_options() -> bool:
    """Whether this interpreter's own ``dictConfig`` gives a ``QueueHandler`` subclass its options."""

    class Configurator(logging.config.DictConfigurator):
        def resolve(self, s: str) -> Any:
            return QueueHandlerProbe if s == "probe" else super().resolve(s)

    try:
        made = Configurator({"version": 1}).configure_handler({"class": "probe", "probe": 1})
    except ValueError:
        return False
    made.close()
    return bool(made.options == {"probe": 1})


class TestCompatibilityShim:
    """fabric wraps dictConfig exactly where the stdlib drops a QueueHandler subclass's options."""

    def test_shim_is_on_exactly_where_the_stdlib_drops_options(self):
        """The shim's release range matches this interpreter's behaviour for other QueueHandler subclasses."""
        assert (not stdlib_passes_queue_handler_options()) == _dictconfig.AFFECTED


def _chain(exc: BaseException) -> str:
    """The messages of an exception and its causes, as dictConfig wraps them."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


class TestListenerKeys:
    """``handlers`` and ``listener`` under a ZmqHandler entry are refused with a clear error on every Python."""

    def test_handlers_under_a_zmq_handler_entry_are_refused(self, endpoint, restore_logging):
        """Handlers listed under a ZmqHandler entry would receive nothing: dictConfig fails and says why."""
        config = _config(endpoint)
        config["handlers"] = {  # type: ignore[index]
            "console": {"class": "logging.StreamHandler"},
            "zmq": {"class": "fabric.ZmqHandler", "endpoint": endpoint, "handlers": ["console"]},
        }
        with pytest.raises(ValueError) as raised:
            logging.config.dictConfig(config)
        assert "does not take 'handlers'" in _chain(raised.value), _chain(raised.value)
        assert not any(isinstance(h, fabric.ZmqHandler) for h in logging.getLogger("dictconfig-test").handlers)

    def test_zmq_listener_as_a_queue_listener_is_refused(self, endpoint, restore_logging):
        """``"listener": "fabric.ZmqListener"`` fails with a message naming where a ZmqListener runs."""
        with pytest.raises(ValueError) as raised:
            logging.config.dictConfig(_config(endpoint, listener="fabric.ZmqListener"))
        chain = _chain(raised.value)
        assert "does not take 'listener'" in chain or "cannot be a QueueHandler's 'listener'" in chain, chain
        assert not any(isinstance(h, fabric.ZmqHandler) for h in logging.getLogger("dictconfig-test").handlers)

    def test_zmq_listener_given_a_queue_says_what_it_takes(self):
        """``ZmqListener(queue)`` (the stdlib's listener call) raises a ValueError naming endpoints."""
        import queue

        with pytest.raises(ValueError, match="takes an endpoint or a list of endpoints, got Queue"):
            fabric.ZmqListener(queue.Queue())  # type: ignore[arg-type]
