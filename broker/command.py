"""The ``logfabric`` console script: the client side's subcommands, plus ``broker`` and ``demo``.

It lives in the broker package because those two run a broker, and the client
library (``fabric``) must not import the broker: :func:`fabric.cli.main` parses
and dispatches, and is handed the broker's subcommands here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from broker import cli, demo
from fabric.cli import Command
from fabric.cli import main as fabric_main

__all__ = ["COMMANDS", "main"]

#: The subcommands that need the broker, as ``logfabric --help`` lists them.
COMMANDS = {
    "demo": Command("run producers, a listener and a live tail, all local", demo.main),
    "broker": Command("run a broker (see 'logfabric broker --help')", cli.main),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logfabric``; return the exit code."""
    return fabric_main(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
