"""A tiny WSGI app that logs, for gunicorn: ``/order?n=N`` logs one INFO record, ``/boom`` one with a traceback."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("shop.web")

# Runs once, in the gunicorn master, when the app is preloaded.
log.info("app loaded", extra={"loaded_by": os.getpid()})


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Log one record per request and answer with this worker's pid."""
    if environ["PATH_INFO"] == "/boom":
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("boom failed", extra={"path": "/boom"})
    elif environ["PATH_INFO"] == "/order":
        n = int(parse_qs(environ["QUERY_STRING"])["n"][0])
        log.info("order %d placed", n, extra={"order": n, "amount": n * 1.5})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
