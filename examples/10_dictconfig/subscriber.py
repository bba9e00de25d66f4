"""Subscriber: everything it does comes from subscriber.json, through fabric.listen_from_config().

Usage: python subscriber.py CONFIG ENDPOINT COUNT
Handles COUNT records from ENDPOINT (overriding the file's endpoints), then exits.
"""

from __future__ import annotations

import logging
import sys
import time

import fabric


def main(config: str, endpoint: str, count: int) -> None:
    listener = fabric.listen_from_config(config, endpoints=[endpoint])
    print("subscriber ready", flush=True)
    deadline = time.monotonic() + 20
    while listener.stats["received"] < count and time.monotonic() < deadline:
        time.sleep(0.01)
    listener.stop()
    logging.shutdown()
    print(f"subscriber received {listener.stats['received']} of {count}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
