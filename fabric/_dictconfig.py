"""The ``"class": "fabric.ZmqHandler"`` dictConfig form on Python 3.12.0 to 3.12.3.

Those releases build every ``QueueHandler`` subclass through a special path
that requires a ``handlers`` key and then calls ``klass(queue)`` with none of
the entry's options (CPython gh-111615 and gh-118868, fixed in 3.12.4), so
``"class": "fabric.ZmqHandler", "endpoint": ...`` fails with *No handlers
specified for a QueueHandler* or *ZmqHandler needs an endpoint*. Their code is
frozen, so on exactly those releases this module wraps two methods of
``logging.config.DictConfigurator``: a ZmqHandler entry gets an empty
``handlers`` list, and is then built as ``klass(**options)``, as on 3.11 and
3.12.4+. Nothing changes for any other class or any other Python.

The ``fabric`` package is often first imported by dictConfig itself, while it
resolves the entry's class; that configuration is already past the point where
the wrapper would add ``handlers``, so the entry being configured gets it here.

Before 3.12 dictConfig has no notion of a queue handler and passes every key
of an entry to the class as a keyword argument, so there the wrapper only
refuses ``handlers`` and ``listener`` under a ZmqHandler entry with an error
that says what to do. From 3.12.4 the stdlib builds a ``QueueListener`` from
those keys and sets it as the handler's ``listener``, where
:class:`fabric.ZmqHandler` refuses one that has handlers.
"""

from __future__ import annotations

import logging.config
import sys
from typing import Any

__all__ = ["AFFECTED", "LISTENER", "install", "refuse_listener_options"]

#: Whether this interpreter is one of the releases whose dictConfig needs the shim.
AFFECTED = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 4)
#: Whether this interpreter's dictConfig passes every key of an entry as a keyword argument.
KEYWORDS_ONLY = sys.version_info < (3, 12)


def refuse_listener_options(handlers: object, listener: object) -> None:
    """Raise a clear error for ``handlers`` or ``listener`` under a ZmqHandler entry.

    A ZmqHandler sends records over ZeroMQ and has no local queue: handlers
    listed under it would receive nothing, and a ``ZmqListener`` is started in
    the subscribing process, not attached to a producer's handler.
    """
    if handlers:
        raise ValueError(
            "a ZmqHandler entry does not take 'handlers': records go over ZeroMQ, so handlers listed under it "
            "would never receive one; attach them to a logger instead, or run them in a subscriber "
            "(fabric.ZmqListener or fabric.listen_from_config)"
        )
    if listener is not None:
        raise ValueError(
            "a ZmqHandler entry does not take 'listener': a ZmqListener runs in the subscribing process "
            "(fabric.ZmqListener or fabric.listen_from_config), not beside the producer's handler"
        )


def _get_listener(handler: object) -> object:
    return vars(handler).get("_listener")


def _set_listener(handler: object, listener: object) -> None:
    if listener is not None:  # dictConfig (3.12.4+) builds one from the entry's "handlers"
        refuse_listener_options(getattr(listener, "handlers", None), None)
    vars(handler)["_listener"] = listener


#: ``ZmqHandler.listener``: the attribute 3.12+ dictConfig sets on a ``QueueHandler``
#: it builds, refusing a listener that was given handlers (they would never receive a record).
LISTENER = property(_get_listener, _set_listener, doc="The QueueListener dictConfig attached (it receives nothing).")


def _is_zmq_handler(klass: object) -> bool:
    from fabric.handler import ZmqHandler

    return isinstance(klass, type) and issubclass(klass, ZmqHandler)


def _entry_class(configurator: Any, config: Any) -> object:
    """The class a handler entry names, or None (the stdlib reports a bad name its own way)."""
    cname = config.get("class") if hasattr(config, "get") else None
    if cname is None:
        return None
    try:
        return cname if callable(cname) else configurator.resolve(cname)
    except Exception:
        return None


def install() -> None:
    """Wrap ``DictConfigurator`` where its handling of ZmqHandler entries needs it (idempotent)."""
    if not (AFFECTED or KEYWORDS_ONLY):
        return
    configurator: Any = logging.config.DictConfigurator
    if getattr(configurator.configure_handler, "_fabric_wrapped", False):
        return
    original_configure = configurator.configure_handler

    def configure_handler(self: Any, config: Any) -> Any:
        if _is_zmq_handler(_entry_class(self, config)):
            if KEYWORDS_ONLY:
                refuse_listener_options(config.get("handlers"), config.get("listener"))
            elif "handlers" not in config:
                config["handlers"] = []
        return original_configure(self, config)

    configure_handler._fabric_wrapped = True  # type: ignore[attr-defined]
    configurator.configure_handler = configure_handler
    if KEYWORDS_ONLY:
        return
    original_queue = configurator._configure_queue_handler

    def configure_queue_handler(self: Any, klass: Any, **kwargs: Any) -> Any:
        if not _is_zmq_handler(klass):
            return original_queue(self, klass, **kwargs)
        refuse_listener_options(kwargs.pop("handlers", None), kwargs.pop("listener", None))
        kwargs.pop("respect_handler_level", None)
        return klass(**kwargs)

    configurator._configure_queue_handler = configure_queue_handler
    _complete_entry_in_flight(original_configure.__code__)


def _complete_entry_in_flight(code: object) -> None:
    """Give ``handlers`` to a ZmqHandler entry whose class is being resolved right now."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            config, cname = frame.f_locals.get("config"), frame.f_locals.get("cname")
            if isinstance(config, dict) and isinstance(cname, str) and cname.split(".")[0] == "fabric":
                config.setdefault("handlers", [])
            return
        frame = frame.f_back  # type: ignore[assignment]
