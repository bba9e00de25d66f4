"""Opening the record store's directory: which files are segments, what a crash or damage left, and repairs.

Nothing found in the directory stops the store: a torn end is cut, an index
that does not check is rebuilt from the records, a file named like a segment
that is none (or cannot be read as one) is renamed ``NAME.corrupt`` and left
alone, and other files are left alone. Junk is set aside *before* the
writable segment is chosen: the newest good segment is the one appended to.
Only an OSError (a file that cannot be read or written) is raised: the store
is then degraded and tries again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from broker._segment import Segment

__all__ = ["LOCK", "Recovery", "load_segments", "quarantine", "sync_dir"]

NAME = re.compile(r"\d{20}\.seg")
LOCK = "LOCK"


@dataclass
class Recovery:
    """What opening the store found."""

    segments: int = 0
    records: int = 0
    torn: list[tuple[str, int]] = field(default_factory=list)
    """Segments whose end was cut, with the bytes cut."""
    rebuilt: list[str] = field(default_factory=list)
    """Sealed segments whose index did not check and was rebuilt from their records."""
    quarantined: list[str] = field(default_factory=list)
    """Files named like segments that are not (renamed to NAME.corrupt and left alone)."""
    ignored: list[str] = field(default_factory=list)
    """Other files in the directory (left alone)."""


def load_segments(directory: Path, max_topic: int, found: Recovery) -> list[Segment]:
    """The good segments in ``directory``, oldest first: all sealed but the newest (which may be). OSError if not."""
    names = []
    for path in sorted(directory.iterdir()):
        if NAME.fullmatch(path.name):
            if path.is_file():
                names.append(path)
            else:  # a directory or such in the way of a segment name
                found.quarantined.append(quarantine(path))
        elif path.name != LOCK and not path.name.endswith(".corrupt"):
            found.ignored.append(path.name)
    segments: list[Segment] = []
    try:
        for path in names:
            first = int(path.name[:20])
            if segments and first < segments[-1].first + segments[-1].count:
                found.quarantined.append(quarantine(path))
                continue
            try:  # every one opened as if the newest: which is the newest is known once junk is set aside
                seg, damage = Segment.open(path, first, writable=True, max_topic=max_topic)
            except OSError:
                raise
            except Exception:  # ValueError: not a segment; anything else: it cannot be read as one
                found.quarantined.append(quarantine(path))
                continue
            if damage.torn_bytes:
                found.torn.append((path.name, damage.torn_bytes))
            if damage.index_rebuilt:
                found.rebuilt.append(path.name)
            segments.append(seg)
        for seg in segments[:-1]:
            seg.seal()
    except BaseException:
        for seg in segments:
            seg.close()
        raise
    return segments


def quarantine(path: Path) -> str:
    """Rename a file that is not a good segment out of the way; return its new name."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target.name


def sync_dir(directory: Path) -> None:
    """fsync a directory (a segment created, renamed or deleted in it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
