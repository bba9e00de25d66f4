"""Recipes 15, 20 and 22, dictConfig everywhere.

The producer (this process) is configured by ``dictConfig`` with a
``"class": "fabric.ZmqHandler"`` handler and a ``'()'`` filter factory. The
subscriber (``subscriber.py``, another process) is configured entirely by
``subscriber.json`` through ``fabric.listen_from_config()``: a ``'()'``
handler factory and a custom filter from ``confhelpers.py``, and ``ext://``
references.

Run from the repository root: python examples/10_dictconfig/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import itertools
import logging
import logging.config
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` (a producer-side ``'()'`` factory with a parameter)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.ids = (f"{prefix}-{n}" for n in itertools.count(1))

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = next(self.ids)
        return True


def producer_config(endpoint: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter, "prefix": "req"}},
        "handlers": {
            "fabric": {
                "class": "fabric.ZmqHandler",
                "endpoint": endpoint,
                "mode": "pub",
                "service": "orders-api",
                "filters": ["request_id"],
            },
        },
        "loggers": {"orders": {"handlers": ["fabric"], "level": "DEBUG", "propagate": False}},
    }


def main(out_dir: Path) -> None:
    with Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker:
        command = [sys.executable, str(HERE / "subscriber.py"), str(HERE / "subscriber.json")]
        subscriber = subprocess.Popen(
            [*command, broker.endpoints["egress"], "5"], cwd=out_dir, stdout=subprocess.PIPE, text=True
        )
        try:
            logging.config.dictConfig(producer_config(broker.endpoints["pub_ingest"]))
            logger = logging.getLogger("orders")
            (handler,) = logger.handlers
            assert isinstance(handler, fabric.ZmqHandler)
            if not handler.wait_ready(20.0):
                raise SystemExit("the subscriber did not subscribe")
            logger.debug("basket 17 priced")
            logger.info("order 17 accepted")
            logger.info("order 18 accepted - noshow")
            logger.warning("order 17 paid twice")
            logger.error("order 19 payment refused")
            handler.close()
            output, _ = subscriber.communicate(timeout=30)
        finally:
            subscriber.kill()
    print(output, end="")
    audit = out_dir / "audit.log"
    print(f"{audit.name} (mode {audit.stat().st_mode & 0o777:o}, WARNING and up):")
    print(audit.read_text(), end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-10-")))
