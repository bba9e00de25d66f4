"""A tiny FastAPI app that logs, for uvicorn: ``/order/N`` logs one INFO record, ``/boom`` one with a traceback."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

log = logging.getLogger("shop.api")

SHUTDOWN_RECORDS = int(os.environ.get("SHOP_SHUTDOWN_RECORDS", "1"))  # the tests set these two
FLUSH_ON_SHUTDOWN = bool(os.environ.get("SHOP_SHUTDOWN_FLUSH"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Log at shutdown, after uvicorn has stopped serving."""
    yield
    for step in range(SHUTDOWN_RECORDS):
        log.info("api stopping", extra={"step": step})
    if FLUSH_ON_SHUTDOWN:
        # Deliver now, waiting up to each handler's linger: after SIGTERM uvicorn
        # re-raises the signal once it has shut down, and no exit hook runs then.
        logging.shutdown()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    """Answer without logging anything."""
    return {"status": "ok"}


@app.get("/order/{n}")
async def order(n: int) -> dict[str, int]:
    """Log one record for order ``n``."""
    log.info("order %d placed", n, extra={"order": n, "amount": n * 1.5})
    return {"order": n}


@app.get("/boom")
async def boom() -> dict[str, str]:
    """Log one error with its traceback."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("boom failed", extra={"path": "/boom"})
    return {"status": "logged"}
