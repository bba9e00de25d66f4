"""Recipes 11 and 21, alternative formatting styles, on both sides of the fabric.

The producer builds messages with BraceMessage, DollarMessage and a
StyleAdapter; the subscriber formats the received records with a ``{``-style
and a ``$``-style Formatter. The two choices are independent, as in the cookbook.

Run from the repository root: python examples/09_formatting_styles/main.py
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
EXPECTED = 5


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    brace = logging.StreamHandler(sys.stdout)
    brace.setFormatter(logging.Formatter("brace:  {name:<11} {levelname:<8s} {message}", style="{"))
    dollar = logging.StreamHandler(sys.stdout)
    dollar.setFormatter(logging.Formatter("dollar: $name $levelname $message (service $service)", style="$"))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], brace, dollar) as listener,
    ):
        subprocess.run(
            [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
        )
        wait_for(lambda: listener.stats["received"] >= EXPECTED)


if __name__ == "__main__":
    main()
