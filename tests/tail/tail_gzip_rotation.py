"""The logging cookbook's gzip namer and rotator, as a dictConfig ``'()'`` factory.

Imported by a ``logfabric tail --config`` subprocess (tests/tail is on its
PYTHONPATH): ``{"()": "tail_gzip_rotation.rotating_gzip_handler", ...}``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from logging.handlers import RotatingFileHandler


def namer(name: str) -> str:
    """Rotated files get a ``.gz`` suffix."""
    return name + ".gz"


def rotator(source: str, dest: str) -> None:
    """Compress the file being rotated out, then remove it."""
    with open(source, "rb") as f_in, gzip.open(dest, "wb") as f_out:
        shutil.copyfileobj(f_in, f_out)
    os.remove(source)


def rotating_gzip_handler(filename: str, maxBytes: int, backupCount: int) -> RotatingFileHandler:
    """A RotatingFileHandler whose backups are gzip files (name.1.gz, name.2.gz, ...)."""
    handler = RotatingFileHandler(filename, maxBytes=maxBytes, backupCount=backupCount, encoding="utf-8")
    handler.namer = namer
    handler.rotator = rotator
    return handler
