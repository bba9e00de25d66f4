"""An SMTP-like handler: every record costs a slow round trip to a mail server."""

from __future__ import annotations

import logging
import time


class SlowMailHandler(logging.Handler):
    """Pretends to mail each record; ``delay`` seconds per record, like a sluggish SMTP server."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.delay = delay
        self.sent: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(self.delay)  # connect, EHLO, MAIL FROM, RCPT TO, DATA, QUIT...
        self.sent.append(self.format(record))
