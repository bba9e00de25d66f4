"""Recipe 26, formatting times in UTC via configuration, on the subscriber.

The subscriber's dictConfig (passed to ``fabric.listen_from_config`` as a
dict) builds a UTCFormatter through ``'()'`` for one handler and a plain
Formatter for the other. ``%(asctime)s`` comes from the record's ``created``,
the producer's clock, so the same event is shown in UTC and in local time.

Run from the repository root: python examples/14_utc_timestamps/main.py
(try it with TZ=Asia/Tokyo or TZ=IST-5:30 to see the two lines differ)
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"


class UTCFormatter(logging.Formatter):
    @staticmethod
    def converter(timestamp: float | None = None, /) -> time.struct_time:
        return time.gmtime(timestamp)


def subscriber_config(egress: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "utc": {"()": UTCFormatter, "format": "UTC   %(asctime)s %(message)s"},
            "local": {"format": "local %(asctime)s %(message)s"},
        },
        "handlers": {
            "console1": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "utc"},
            "console2": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "local"},
        },
        "listener": {"endpoints": [egress], "handlers": ["console1", "console2"]},
    }


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.listen_from_config(subscriber_config(broker.endpoints["egress"])) as listener,
    ):
        producer = [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]]
        subprocess.run(producer, check=True, timeout=60)
        wait_for(lambda: listener.stats["received"] >= 1)


if __name__ == "__main__":
    main()
