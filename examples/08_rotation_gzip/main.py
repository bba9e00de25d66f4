"""Recipes 10 and 16, file rotation on the subscriber, with the rotated files gzip-compressed.

The subscriber writes remote records with a RotatingFileHandler. The cookbook's
namer and rotator compress each file as it is rotated out; unlike the
cookbook's zlib snippet, these are real gzip files (``gzip -d`` and ``zcat``
read them).

Run from the repository root: python examples/08_rotation_gzip/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import gzip
import logging
import logging.handlers
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
COUNT = 45
LINE_BYTES = len("app INFO record 000\n")


def namer(name: str) -> str:
    return name + ".gz"


def rotator(source: str, dest: str) -> None:
    with open(source, "rb") as sf, gzip.open(dest, "wb") as df:
        shutil.copyfileobj(sf, df)
    os.remove(source)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main(out_dir: Path) -> None:
    log_file = out_dir / "app.log"
    # room for exactly 10 lines per file; keep 5 compressed backups
    rh = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 * LINE_BYTES + 1, backupCount=5)
    rh.rotator = rotator
    rh.namer = namer
    rh.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], rh) as listener,
    ):
        producer = [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"], str(COUNT)]
        subprocess.run(producer, check=True, timeout=60)
        wait_for(lambda: listener.stats["received"] >= COUNT)
    rh.close()

    total = 0
    for path in sorted(out_dir.glob("app.log*")):
        if path.suffix == ".gz":
            with path.open("rb") as f:
                kind = "gzip" if f.read(2) == b"\x1f\x8b" else "not gzip!"
            with gzip.open(path, "rt") as f:
                lines = f.read().splitlines()
        else:
            kind = "text"
            lines = path.read_text().splitlines()
        total += len(lines)
        print(f"{path.name:<12} {kind:<5} {len(lines):>2} lines: {lines[0]!r} .. {lines[-1]!r}")
    print(f"{total} lines in all, {COUNT} records sent")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-08-")))
