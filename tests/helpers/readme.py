"""README.md's fenced blocks for tests/test_readme.py: found, given live addresses, and run as programs.

See tests/test_readme.py for the readme-test comments that steer a block.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.net import ROOT, child_env

README = ROOT / "README.md"
RUN_TIMEOUT = 20.0
"""Seconds any block may run before it counts as hanging."""

#: README address -> the role whose live endpoint replaces it. ``broker`` is the
#: broker's host, ``127.0.0.1:5558`` the subscribers' default (a port-forwarded
#: broker), ``collector`` a process binding PULL, ``producer`` one binding XPUB.
#: Binding on ``*`` becomes binding on 127.0.0.1: the tests reach only loopback.
ADDRESSES = {
    "tcp://broker:5556": "pub_ingest",
    "tcp://broker:5557": "push_ingest",
    "tcp://broker:5558": "egress",
    "tcp://127.0.0.1:5558": "egress",
    "tcp://*:5557": "collector",
    "tcp://collector:5557": "collector",
    "tcp://*:5556": "producer",
    "tcp://producer:5556": "producer",
}
TCP = re.compile(r"tcp://[^\s\"'`,)\]]+")
FREE = re.compile(r"tcp://127\.0\.0\.1:[*0]$")  # a free loopback port: needs no mapping


@dataclass(frozen=True)
class Block:
    """One fenced block of README.md."""

    lang: str
    code: str
    line: int
    """The line of its opening fence (1-based)."""
    key: str
    """``SECTION #N``: its section's title and its place among the section's python blocks."""
    kind: str = ""
    """The directive before it (``skip``, ``file``), if any."""
    arg: str = ""


FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!-- readme-test: (?P<kind>[a-z]+) (?P<arg>.*?) ?-->$")


def parse(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown text, and its misplaced or malformed readme-test comments."""
    lines = text.splitlines()
    blocks: list[Block] = []
    stray: list[str] = []
    section, counts, i = "(top)", Counter[str](), 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            if lines[i].startswith("#"):
                section = lines[i].lstrip("#").strip()
            elif "readme-test" in lines[i]:
                following = lines[i + 1] if i + 1 < len(lines) else ""
                if not (DIRECTIVE.match(lines[i]) and FENCE.match(following)):
                    stray.append(f"line {i + 1}: {lines[i]}")
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        i += 1
        lang = fence.group(1)
        counts[section] += lang == "python"
        directive = DIRECTIVE.match(lines[start - 1]) if start else None
        kind, arg = (directive["kind"], directive["arg"]) if directive else ("", "")
        blocks.append(Block(lang, "\n".join(body) + "\n", start + 1, f"{section} #{counts[section]}", kind, arg))
    return blocks, stray


def live_code(block: Block, live: dict[str, str]) -> str:
    """The block's text with each README address replaced by its live endpoint."""

    def swap(match: re.Match[str]) -> str:
        address = match.group()
        if FREE.match(address):
            return address
        assert address in ADDRESSES, (
            f"README.md line {block.line}: address {address!r} has no live counterpart; "
            "add it to ADDRESSES in tests/helpers/readme.py or mark the block skip"
        )
        return live[ADDRESSES[address]]

    return TCP.sub(swap, block.code)


class Snippet:
    """One README block running as ``app.py`` in its own directory; stdout and stderr go to files."""

    def __init__(self, block: Block, cwd: Path, live: dict[str, str], files: list[Block]) -> None:
        self.block, self.cwd = block, cwd
        for f in files:
            (cwd / f.arg).write_text(live_code(f, live))
        (cwd / "app.py").write_text(live_code(block, live))
        self._out, self._err = cwd / "stdout", cwd / "stderr"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "app.py"], cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    def out(self) -> str:
        """What it printed on stdout so far."""
        return self._out.read_text(errors="replace")

    def err(self) -> str:
        """What it printed on stderr so far."""
        return self._err.read_text(errors="replace")

    def report(self) -> str:
        """Its code and output, for a failure message."""
        return f"README.md line {self.block.line}:\n{self.block.code}--- stdout:\n{self.out()}--- stderr:\n{self.err()}"

    def finish(self, timeout: float = RUN_TIMEOUT) -> None:
        """Wait (bounded) for it to exit, and require exit status 0."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"the block did not finish within {timeout} s; {self.report()}")
        assert self.proc.returncode == 0, f"the block exited {self.proc.returncode}; {self.report()}"

    def interrupt(self) -> None:
        """Press Ctrl-C (SIGINT), then :meth:`finish`."""
        self.proc.send_signal(signal.SIGINT)
        self.finish(10.0)

    def kill(self) -> None:
        """Kill it if it still runs (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
