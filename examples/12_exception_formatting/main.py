"""Recipe 23, customised exception formatting: one line per record, tracebacks from another process.

The cookbook's OneLineExceptionFormatter overrides ``formatException``, which
a Formatter calls only when the record carries ``exc_info``. A remote record
has no live exception: its traceback arrives already formatted, in
``exc_text`` (and as data in ``record.exceptions``). The subscriber's
formatter therefore gives ``exc_text`` the same ``repr()`` treatment, so a
remote traceback comes out on one line exactly like a local one.

Run from the repository root: python examples/12_exception_formatting/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
EXPECTED = 2

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class OneLineExceptionFormatter(logging.Formatter):
    def formatException(self, ei: ExcInfo) -> str:
        """Format a local exception so that it prints on a single line."""
        return repr(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        remote_text = record.exc_text if not record.exc_info else None
        if remote_text:  # a traceback that arrived as text: flatten it the same way
            record.exc_text = repr(remote_text)
        try:
            s = super().format(record)
        finally:
            if remote_text:
                record.exc_text = remote_text  # other handlers see the record unchanged
        if record.exc_text:
            s = s.replace("\n", "") + "|"
        return s


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main(out_dir: Path) -> None:
    output = out_dir / "output.txt"
    fh = logging.FileHandler(output, "w")
    fh.setFormatter(OneLineExceptionFormatter("%(asctime)s|%(levelname)s|%(message)s|", "%d/%m/%Y %H:%M:%S"))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], fh) as listener,
    ):
        subprocess.run(
            [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
        )
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    fh.close()
    lines = output.read_text().splitlines()
    print(f"{output.name}: {len(lines)} lines")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-12-")))
