"""install(): the one line a service adds to ship its logs."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import Any

from fabric import _options, _sockets
from fabric.codec import Codec
from fabric.handler import Mode, ZmqHandler

__all__ = ["install"]

_warned = threading.Event()


def install(
    endpoint: str | None = None,
    *,
    level: int | str | None = None,
    logger: logging.Logger | str | None = None,
    service: str | None = None,
    mode: Mode = "push",
    codec: Codec = "protobuf",
    bind: bool = False,
    hwm: int = _sockets.DEFAULT_HWM,
    buffer_bytes: int = _sockets.DEFAULT_BUFFER_BYTES,
    send_timeout: float = 0.0,
    linger: float = 1.0,
    max_message: int = _sockets.DEFAULT_MAX_MESSAGE,
    curve_server_key: str | os.PathLike[str] | None = None,
    curve_client_key: str | os.PathLike[str] | None = None,
    curve_allow_open_key: bool = False,
    batch_delay: float = 0.002,
    flush_level: int | str = logging.WARNING,
    flush_on_signal: bool = True,
    control: bool | str = False,
) -> ZmqHandler:
    """Attach a :class:`ZmqHandler` to ``logger`` (default: the root logger) and return it.

    ``endpoint`` defaults to ``$LOGFABRIC_ENDPOINT`` and ``service`` to
    ``$LOGFABRIC_SERVICE`` (then the program name). ``level``, if given, is set
    on the logger, so ``install(level="INFO")`` is all a service needs. Calling
    it again for the same logger replaces the earlier handler instead of adding
    a second one. The other options are :class:`ZmqHandler`'s; among them
    ``flush_on_signal=False`` leaves SIGTERM and SIGINT alone. Every option is
    defined once in :data:`fabric._producer_options.OPTIONS`; a bad one raises
    :class:`fabric.ConfigError` and attaches nothing.

    A framework that configures logging afterwards (``django.setup()``,
    ``uvicorn.run()``, any ``logging.config.dictConfig``) closes every handler;
    this one opens its socket again at its next record. If that configuration
    also replaces the logger's handlers (it configures the root logger), a
    ``RuntimeWarning`` says so, once per process, and what to do instead.
    """
    handler_options = _options.check_install(locals())
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    handler = ZmqHandler(**handler_options)
    for old in [h for h in target.handlers if getattr(h, "_installed_by_fabric", False)]:
        target.removeHandler(old)
        old.close()
    handler._installed_by_fabric = True  # type: ignore[attr-defined]
    with logging._lock:  # type: ignore[attr-defined]
        if type(target.handlers) is list:
            target.handlers = _Watched(target.handlers)
    target.addHandler(handler)
    if level is not None:
        target.setLevel(level)
    return handler


class _Watched(list):  # type: ignore[type-arg]
    """A logger's handler list that notices when logging configuration takes out an install()ed handler.

    ``Logger.removeHandler`` (which from 3.14 removes from a :meth:`copy`) is
    the one way ``dictConfig``, ``fileConfig`` and ``basicConfig(force=True)``
    take handlers off a logger; everything else a list does, and so every
    logging call, is the plain list's.
    """

    __slots__ = ()

    def copy(self) -> _Watched:
        """A watched copy: from 3.14 ``removeHandler`` removes from a copy, then puts the copy in place."""
        return _Watched(self)

    def remove(self, value: Any, /) -> None:
        """Remove ``value``; warn if it is an install()ed handler taken out by a logging configuration."""
        super().remove(value)
        if getattr(value, "_installed_by_fabric", False) and not _warned.is_set():
            by = _configuring(sys._getframe(1))
            if by is not None:
                _warned.set()
                _warn(value, by)


def _configuring(frame: Any) -> str | None:
    """The logging configuration call (``dictConfig``, ``fileConfig``, ``basicConfig``) on the stack, if any."""
    config_file = sys.modules["logging.config"].__file__ if "logging.config" in sys.modules else None
    for _ in range(12):
        if frame is None:
            return None
        code = frame.f_code
        if config_file is not None and code.co_filename == config_file:
            file_config = code.co_name == "_install_loggers"
            return "logging.config.fileConfig()" if file_config else "logging.config.dictConfig()"
        if code.co_name == "basicConfig" and code.co_filename == logging.__file__:
            return "logging.basicConfig(force=True)"
        frame = frame.f_back
    return None


def _warn(handler: ZmqHandler, by: str) -> None:
    """Say once, on stderr, that install()'s handler was taken off its logger, and what to do."""
    frame: Any = sys._getframe(0)
    level = 1
    here, logging_dir = os.path.dirname(__file__), os.path.dirname(logging.__file__)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) in (here, logging_dir):
        frame, level = frame.f_back, level + 1  # point at the caller of the configuration
    message = (
        f"logfabric: {by} removed the ZmqHandler that fabric.install() attached ({handler.endpoint}); "
        "unless that configuration has its own fabric.ZmqHandler, records no longer reach the fabric. "
        "Add a fabric.ZmqHandler to that configuration's root handlers, or call fabric.install() after the "
        "framework has configured logging (uvicorn: log_config=None)."
    )
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=level)
    except Exception:  # warnings turned into errors must not break the configuration that is running
        sys.stderr.write(f"RuntimeWarning: {message}\n")
