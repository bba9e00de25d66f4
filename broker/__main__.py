"""``python -m broker``: the same as ``logfabric broker``."""

import sys

from broker.cli import main

sys.exit(main(prog="python -m broker"))
