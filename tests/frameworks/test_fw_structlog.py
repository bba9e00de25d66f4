"""structlog: both stdlib recipes; the key-values must arrive as typed record attributes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once

pytestmark = pytest.mark.timeout(60)

COUNT = 50


def run(fabric: Fabric, start_app: Callable[..., App], recipe: str) -> dict[Any, Any]:
    """Run ``structlog_app.py RECIPE COUNT`` and index what arrived by ``order``."""
    env = fabric.env(LOGFABRIC_SERVICE=f"structlog-{recipe}")
    start_app([sys.executable, str(APPS / "structlog_app.py"), recipe, str(COUNT)], env=env).finish(timeout=30)
    fabric.settle()
    records = fabric.records(f"structlog-{recipe}")
    assert {r.name for r in records} == {"shop.orders"}, {r.name for r in records}
    return exactly_once(records, key=lambda r: getattr(r, "order", r.getMessage()))


def check(fabric: Fabric, records: dict[Any, Any]) -> None:
    """Every event once: message is the event, key-values typed attributes, the error with its traceback."""
    assert_delivered(records, range(-1, COUNT), "structlog events")
    for n in range(COUNT):
        record = records[n]
        assert record.getMessage() == "order placed"
        assert record.levelname == "INFO"
        assert (record.user_id, record.order, record.amount, record.paid) == (42, n, n * 1.5, True)
        assert record.tags == ["new", "web"]
        assert type(record.user_id) is int
        assert (record.logger, record.level) == ("shop.orders", "info")
        assert not [k for k in vars(record) if k.startswith("_")]  # structlog's _logger and _name stay home
    failed = records[-1]
    assert failed.getMessage() == "order failed" and failed.levelname == "ERROR"
    assert failed.exc_text.rstrip().endswith("KeyError: 'missing'")
    fabric.check()


def test_processor_formatter_recipe_ships_key_values_as_typed_attributes(
    fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """wrap_for_formatter: user_id=42 arrives as record.user_id == 42, the event as the message."""
    check(fw_fabric, run(fw_fabric, start_app, "formatter"))


def test_render_to_log_kwargs_recipe_ships_key_values_as_typed_attributes(
    fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """render_to_log_kwargs: user_id=42 arrives as record.user_id == 42, the event as the message."""
    check(fw_fabric, run(fw_fabric, start_app, "kwargs"))
