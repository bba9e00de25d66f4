"""loguru propagated into the standard library (loguru's ``PropagateHandler`` recipe), shipped by ``fabric.install()``.

``python loguru_app.py COUNT``: COUNT INFO messages with bound values, then one exception.
"""

import logging
import sys

from loguru import logger

import fabric


class PropagateHandler(logging.Handler):
    """Hand each loguru message to the standard logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


fabric.install(level="INFO")  # endpoint and service from LOGFABRIC_ENDPOINT and LOGFABRIC_SERVICE
logger.remove()  # loguru's own stderr sink
logger.add(PropagateHandler(), format="{message}")

log = logger.bind(user_id=42)
for n in range(int(sys.argv[1])):
    log.info("order {n} placed", n=n)
try:
    1 / 0  # noqa: B018
except ZeroDivisionError:
    log.exception("payment failed")
