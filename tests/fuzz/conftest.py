"""Fixtures for the fuzz tests: the current frame layout, learnt from a real handler."""

from __future__ import annotations

import pytest

from tests.helpers.wire import Wire


@pytest.fixture(scope="session")
def fuzz_wire() -> Wire:
    """Capture one message of a real ZmqHandler and find where its payload starts."""
    return Wire.learn(service="fuzz-wire", name="fuzz.wire")
