"""Callables that subscriber.json names with ``'()'`` and ``ext://``."""

from __future__ import annotations

import logging
import os


class NoShowFilter(logging.Filter):
    """The cookbook's MyFilter: drops messages containing ``param`` and marks the others."""

    def __init__(self, param: str | None = None) -> None:
        super().__init__()
        self.param = param

    def filter(self, record: logging.LogRecord) -> bool:
        if self.param is None:
            return True
        allow = self.param not in record.msg
        record.msg = "changed: " + record.msg
        return allow


def private_file_handler(filename: str, mode: str = "a", encoding: str | None = None) -> logging.FileHandler:
    """The cookbook's owned_file_handler, setting permission bits (0600) instead of an owner."""
    if not os.path.exists(filename):
        open(filename, "a").close()
    os.chmod(filename, 0o600)
    return logging.FileHandler(filename, mode, encoding)
