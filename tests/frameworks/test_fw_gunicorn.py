"""gunicorn: ``--preload`` with three sync workers, logging configured by ``logconfig_dict`` (the class form)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import pytest

from fabric.tail import SafeFormatter
from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once
from tests.helpers.net import free_port, http_get

pytestmark = pytest.mark.timeout(90)

REQUESTS = 60


def test_preloaded_app_with_three_workers_delivers_every_record_once(
    fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """Every request's app and access record, each worker's boot record and a traceback arrive exactly once."""
    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(APPS / "gunicorn_conf.py"), "--bind", address, "wsgi_app:app"]
    app = start_app(argv, env=fw_fabric.env())
    app.wait_http(address, "/health")
    served_by = {}
    for n in range(REQUESTS):
        status, body = http_get(address, f"/order?n={n}")
        assert status == 200, body
        served_by[n] = int(body)
    assert http_get(address, "/boom")[0] == 200
    app.signal(signal.SIGTERM)  # graceful: workers finish, then everyone exits through atexit
    assert app.wait(30) == 0, app.output()[-4000:]
    fw_fabric.settle()

    # The app module was imported once, in the master, before the workers were forked.
    loaded_records = [r for r in fw_fabric.records("shop-web", "shop.web") if r.getMessage() == "app loaded"]
    assert len(loaded_records) == 1, [r.getMessage() for r in loaded_records]
    assert loaded_records[0].process == app.pid and loaded_records[0].loaded_by == app.pid

    orders = exactly_once(
        (r for r in fw_fabric.records("shop-web", "shop.web") if r.getMessage().startswith("order ")),
        key=lambda r: r.order,
    )
    assert_delivered(orders, range(REQUESTS), "gunicorn app records")
    for n, record in orders.items():
        assert record.getMessage() == f"order {n} placed"
        assert (record.levelname, record.levelno, record.service) == ("INFO", 20, "shop-web")
        assert type(record.order) is int and record.amount == n * 1.5
        assert record.process == served_by[n], "a record must carry the pid of the worker that served it"

    (boom,) = [r for r in fw_fabric.records("shop-web", "shop.web") if r.getMessage() == "boom failed"]
    assert boom.levelname == "ERROR" and boom.path == "/boom"
    assert boom.exc_text.startswith("Traceback (most recent call last):")
    assert boom.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert boom.exceptions[0]["type"] == "builtins.ZeroDivisionError"
    assert boom.exceptions[0]["message"] == "division by zero"
    shown = SafeFormatter("%(service)s %(levelname)s %(name)s %(message)s").format(boom).splitlines()
    assert shown[0] == "shop-web ERROR shop.web boom failed"
    assert all(line.startswith("  | ") for line in shown[1:]) and shown[-1] == "  | ZeroDivisionError: division by zero"

    access = exactly_once(fw_fabric.records("shop-web", "gunicorn.access"), key=lambda r: r.getMessage().split('"')[1])
    expected = {"GET /health HTTP/1.1", "GET /boom HTTP/1.1"} | {f"GET /order?n={n} HTTP/1.1" for n in range(REQUESTS)}
    assert_delivered(access, expected, "gunicorn access records")

    booted = [r for r in fw_fabric.records("shop-web", "gunicorn.error") if "Booting worker" in r.getMessage()]
    workers = {r.process for r in booted}
    assert len(booted) == 3 and len(workers) == 3 and app.pid not in workers, [r.getMessage() for r in booted]
    assert set(served_by.values()) <= workers
    fw_fabric.check()
