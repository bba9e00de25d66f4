"""Recipe 6, dealing with handlers that block: the slow handler lives on the subscriber.

The producer only hands records to its ZmqHandler; a subscriber process runs
the slow, SMTP-like handler on its listener thread. The producer's cost per
logging call is measured three ways: with a subscriber whose handler is fast,
with one whose handler takes 20 ms per record, and with that same slow
handler attached directly in the producer (the cookbook's problem).

Run from the repository root: python examples/04_blocking_handlers/main.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mailer import SlowMailHandler

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
COUNT = 50  # records per run
DELAY = 0.02  # seconds the slow handler spends per record


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (bounded) until the records have been handled."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records were not handled in time")
        time.sleep(0.01)


def produce(endpoint: str, count: int, *options: str) -> float:
    """Run the producer in its own process; return its microseconds per logging call."""
    command = [sys.executable, str(HERE / "producer.py"), endpoint, str(count), *options]
    done = subprocess.run(command, check=True, timeout=60, capture_output=True, text=True)
    return float(done.stdout)


def main() -> None:
    mail = SlowMailHandler(delay=0.0)
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], mail),
    ):
        endpoint = broker.endpoints["pub_ingest"]
        fast = produce(endpoint, COUNT)
        wait_for(lambda: len(mail.sent) == COUNT)

        mail.delay = DELAY  # the mail server turns sluggish
        started = time.monotonic()
        slow = produce(endpoint, COUNT)
        producer_done = time.monotonic() - started
        wait_for(lambda: len(mail.sent) == 2 * COUNT)
        subscriber_done = time.monotonic() - started
    direct = produce(endpoint, 10, "--direct")

    print(f"producer, subscriber handler fast:         {fast:9.1f} us/call")
    print(f"producer, subscriber handler {DELAY * 1000:.0f} ms/record: {slow:9.1f} us/call")
    print(f"producer, {DELAY * 1000:.0f} ms handler in the producer:   {direct:9.1f} us/call")
    print(f"mails sent by the subscriber: {len(mail.sent)} of {2 * COUNT}")
    print(f"slow run: producer process finished after {producer_done:.2f} s, subscriber after {subscriber_done:.2f} s")


if __name__ == "__main__":
    main()
