"""install(): the one line a service adds to ship its logs."""

from __future__ import annotations

import logging
import os
from typing import Any

from fabric.handler import ZmqHandler

__all__ = ["install"]


def install(
    endpoint: str | None = None,
    *,
    level: int | str | None = None,
    service: str | None = None,
    logger: logging.Logger | str | None = None,
    **handler_options: Any,
) -> ZmqHandler:
    """Attach a :class:`ZmqHandler` to ``logger`` (default: the root logger) and return it.

    ``endpoint`` defaults to ``$LOGFABRIC_ENDPOINT`` and ``service`` to
    ``$LOGFABRIC_SERVICE`` (then the program name). ``level``, if given, is set
    on the logger, so ``install(level="INFO")`` is all a service needs. Calling
    it again for the same logger replaces the earlier handler instead of adding
    a second one. Other keyword arguments go to :class:`ZmqHandler`.
    """
    endpoint = endpoint or os.environ.get("LOGFABRIC_ENDPOINT")
    if not endpoint:
        raise ValueError("no endpoint: pass one, e.g. fabric.install('tcp://broker:5557'), or set LOGFABRIC_ENDPOINT")
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    handler = ZmqHandler(endpoint, service=service, **handler_options)
    for old in [h for h in target.handlers if getattr(h, "_installed_by_fabric", False)]:
        target.removeHandler(old)
        old.close()
    handler._installed_by_fabric = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    if level is not None:
        target.setLevel(level)
    return handler
