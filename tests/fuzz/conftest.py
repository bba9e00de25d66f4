"""Fixtures for the fuzz tests: the current frame layout, learnt from a real handler."""

from __future__ import annotations

import pytest

from tests.fuzz.framing import TopicWire


@pytest.fixture(scope="session")
def fuzz_wire() -> TopicWire:
    """Capture one message of a real ZmqHandler and find where its payload starts (and its topic)."""
    return TopicWire.learn(service="fuzz-wire", name="fuzz.wire")
