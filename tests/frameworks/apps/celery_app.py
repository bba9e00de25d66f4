"""A Celery app with a prefork worker and the filesystem transport; its tasks log.

Worker: ``celery -A celery_app worker --pool prefork --concurrency 2``;
client: ``celery_client.py``.
"""

import logging
import logging.config
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from celery.utils.log import get_task_logger

DATA = Path(os.environ["SHOP_CELERY_DATA"])  # a folder of this machine: queue, processed messages, results
for folder in ("queue", "processed", "results"):
    (DATA / folder).mkdir(parents=True, exist_ok=True)

app = Celery("shop", broker="filesystem://", backend=f"file://{DATA / 'results'}")
app.conf.broker_transport_options = {
    "data_folder_in": str(DATA / "queue"),
    "data_folder_out": str(DATA / "queue"),
    "processed_folder": str(DATA / "processed"),
    "polling_interval": 0.05,
}
app.conf.worker_prefetch_multiplier = 1

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "fabric": {
            "class": "fabric.ZmqHandler",
            "endpoint": os.environ.get("LOGFABRIC_ENDPOINT", "tcp://127.0.0.1:5557"),
            "service": "shop-worker",
            "level": "INFO",
        },
    },
    "root": {"handlers": ["fabric"], "level": "INFO"},
}


@setup_logging.connect
def ship_logs(**kwargs: Any) -> None:
    """Celery calls this instead of configuring logging itself (so it leaves the root logger alone)."""
    logging.config.dictConfig(LOGGING)


log = get_task_logger(__name__)


@app.task
def charge(order: int) -> int:
    """Log one record for ``order`` and return its price in cents."""
    time.sleep(0.01)  # long enough for both pool processes to take tasks
    log.info("charged order %d", order, extra={"order": order, "cents": order * 150})
    return order * 150


@app.task
def fail() -> str:
    """Log one error with its traceback."""
    try:
        int("not a number")
    except ValueError:
        log.exception("charge failed", extra={"order": -1})
    return "logged"
