"""loguru propagated into stdlib logging: messages, bound values and the exception's traceback arrive."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once

pytestmark = pytest.mark.timeout(60)

COUNT = 50


def run(fabric: Fabric, start_app: Callable[..., App]) -> list[logging.LogRecord]:
    """Run ``loguru_app.py COUNT``; return what arrived."""
    env = fabric.env(LOGFABRIC_SERVICE="shop-loguru")
    start_app([sys.executable, str(APPS / "loguru_app.py"), str(COUNT)], env=env).finish(timeout=30)
    fabric.settle()
    return fabric.records("shop-loguru")


def test_messages_and_bound_values_arrive_once(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """Each loguru message arrives once on its module's logger, with loguru's bound values in ``extra``."""
    records = run(fw_fabric, start_app)
    infos = exactly_once((r for r in records if r.levelname == "INFO"), key=lambda r: r.extra["n"])
    assert_delivered(infos, range(COUNT), "loguru messages")
    for n, record in infos.items():
        assert (record.name, record.getMessage(), record.funcName) == ("__main__", f"order {n} placed", "<module>")
        assert record.extra == {"user_id": 42, "n": n}
    fw_fabric.check()


def test_exception_arrives_with_its_real_traceback(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """``logger.exception``: the record's exc_text is the real traceback, not loguru's blank placeholder."""
    (failed,) = [r for r in run(fw_fabric, start_app) if r.levelname == "ERROR"]
    assert failed.getMessage().splitlines()[0] == "payment failed"
    assert failed.extra == {"user_id": 42}
    assert failed.exceptions[0]["type"] == "builtins.ZeroDivisionError"
    assert failed.exc_text is not None and failed.exc_text.startswith("Traceback (most recent call last):")
    assert failed.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
    fw_fabric.check()
