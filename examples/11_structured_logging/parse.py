"""A downstream parser for ``logfabric tail -o json``: one JSON object per line on stdin.

Usage: logfabric tail tcp://127.0.0.1:5558 -o json | python parse.py
"""

from __future__ import annotations

import json
import sys

STANDARD = {"name", "levelname", "levelno", "message", "created", "service", "host", "process", "processName"}
STANDARD |= {"thread", "threadName", "pathname", "lineno", "funcName", "exc_text", "stack_info"}
STANDARD |= {"producer_id", "seq", "exceptions", "taskName", "filename", "module", "msecs", "relativeCreated"}


def main() -> None:
    for line in sys.stdin:
        doc = json.loads(line)
        text, sep, payload = doc["message"].partition(" >>> ")
        print(f"{doc['service']} {doc['name']} {doc['levelname']} {text!r}")
        if sep:  # a StructuredMessage: its data is JSON inside the message
            for key, value in sorted(json.loads(payload).items()):
                print(f"    message field {key} = {value!r} ({type(value).__name__})")
        for key in sorted(set(doc) - STANDARD):  # extras: JSON keys of their own
            print(f"    extra {key} = {doc[key]!r} ({type(doc[key]).__name__})")


if __name__ == "__main__":
    main()
