"""What a ZmqHandler checks and derives from its options: the endpoint, limits, service name and producer id.

The options and their checks are defined once, in :mod:`fabric._producer_options`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from fabric._errors import ConfigError
from fabric._producer_options import HANDLER, INSTALL

__all__ = ["check", "check_install", "default_service", "levelno", "new_producer_id"]

_SERVICE_ENV = HANDLER["service"].env


def default_service() -> str:
    """The service name used when none is given: ``$LOGFABRIC_SERVICE`` or the program name."""
    env = os.environ.get(_SERVICE_ENV)
    if env:
        return env
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog.endswith(".py"):
        prog = prog[:-3]
    return prog or "python"


def levelno(level: int | str) -> int:
    """The number of a level given by number or name (checked already)."""
    return level if isinstance(level, int) else int(logging.getLevelNamesMapping()[level])


def new_producer_id() -> int:
    """A fresh random producer id."""
    # From the OS, not from `random`: a child made by a bare fork() (no at-fork
    # hooks, so `random` is not reseeded) must not draw its parent's next id.
    return int.from_bytes(os.urandom(8), "big")


def check(given: Mapping[str, Any]) -> str:
    """Check every ZmqHandler option in ``given`` (the constructor's arguments by name); return the endpoint.

    Each option's check is its entry's in :data:`fabric._producer_options.HANDLER`;
    a bad value raises :class:`fabric.ConfigError` saying why.
    """
    # Python 3.12+ dictConfig builds QueueHandler subclasses as
    # klass(queue, **config): the endpoint then arrives by keyword and the
    # positional queue is not ours to use.
    queue_or_endpoint, endpoint = given["_queue_or_endpoint"], given["endpoint"]
    if endpoint is None and isinstance(queue_or_endpoint, str):
        endpoint = queue_or_endpoint
    if endpoint is None:
        got = "" if queue_or_endpoint is None else f", got {type(queue_or_endpoint).__name__}"
        raise ConfigError(f"ZmqHandler needs one endpoint string, e.g. ZmqHandler('tcp://127.0.0.1:5557'){got}")
    for name, option in HANDLER.items():
        if option.check is not None:
            option.check(name, endpoint if name == "endpoint" else given[name])
    return str(endpoint)


def check_install(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`fabric.install`'s arguments in ``given``; return the ZmqHandler's keyword arguments.

    An option :func:`fabric.install` reads from the environment (the endpoint)
    takes its variable's value when not given; the options of install() alone
    (``level``, ``logger``) are checked here, the handler's by ZmqHandler.
    Raises :class:`fabric.ConfigError` saying why.
    """
    values = {name: given[name] for name in INSTALL}
    for name, option in INSTALL.items():
        if option.env and option.env_reader == "install" and not values[name]:
            values[name] = os.environ.get(option.env) or None
    if not values["endpoint"]:
        variable = INSTALL["endpoint"].env
        raise ConfigError(f"no endpoint: pass one, e.g. fabric.install('tcp://broker:5557'), or set {variable}")
    for name, option in INSTALL.items():
        if option.check is not None and HANDLER.get(name) is not option:  # the handler checks its own
            option.check(name, values[name])
    return {name: value for name, value in values.items() if HANDLER.get(name) is INSTALL[name]}
