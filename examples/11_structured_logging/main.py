"""Recipe 19, structured logging: ``logfabric tail -o json`` piped to a parser.

The producer logs the cookbook's StructuredMessage (JSON inside the message)
and a record with typed ``extra`` fields. The subscriber is the ``logfabric
tail`` command, printing each record as one JSON object; ``parse.py`` reads
those lines, as ``jq`` or a log shipper would.

Run from the repository root: python examples/11_structured_logging/main.py
(the shell equivalent: logfabric tail ENDPOINT -o json -c 3 | python parse.py)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
COUNT = 3


def main() -> None:
    with Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker:
        tail_command = [sys.executable, "-m", "fabric.cli", "tail", broker.endpoints["egress"], "-o", "json"]
        tail = subprocess.Popen(
            [*tail_command, "-c", str(COUNT), "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        parse = subprocess.Popen(
            [sys.executable, str(HERE / "parse.py")], stdin=tail.stdout, stdout=subprocess.PIPE, text=True
        )
        assert tail.stdout is not None
        tail.stdout.close()  # parse.py owns the pipe now
        try:
            # the producer waits until the tail's subscription has reached it
            subprocess.run(
                [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
            )
            parsed, _ = parse.communicate(timeout=30)
            _, summary = tail.communicate(timeout=10)
        finally:
            tail.kill()
            parse.kill()
    print(parsed, end="")
    print(summary, end="")  # the tail's own summary, from its stderr


if __name__ == "__main__":
    main()
