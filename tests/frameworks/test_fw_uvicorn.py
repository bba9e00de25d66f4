"""uvicorn with a FastAPI app, logging configured by ``--log-config`` (a JSON dictConfig in the class form)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once
from tests.helpers.net import free_port, http_get

pytestmark = pytest.mark.timeout(90)

REQUESTS = 30


def log_config(fabric: Fabric, tmp_path: Path) -> Path:
    """``apps/uvicorn_log.json`` with its endpoint pointed at the test's broker."""
    config = json.loads((APPS / "uvicorn_log.json").read_text())
    config["handlers"]["fabric"]["endpoint"] = fabric.endpoint
    path = tmp_path / "uvicorn_log.json"
    path.write_text(json.dumps(config))
    return path


def serve(fabric: Fabric, start_app: Callable[..., App], tmp_path: Path, *options: str, **env: str) -> tuple[App, str]:
    """Start ``uvicorn asgi_app:app --log-config ... OPTIONS``; wait until ``/health`` (which logs nothing) answers."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "asgi_app:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--log-config", str(log_config(fabric, tmp_path)), *options]
    app = start_app(argv, env=fabric.env(**env))
    app.wait_http(f"127.0.0.1:{port}", "/health")
    return app, f"127.0.0.1:{port}"


def test_log_config_ships_every_record_and_ctrl_c_delivers_the_last_ones(
    fw_fabric: Fabric, start_app: Callable[..., App], tmp_path: Path
) -> None:
    """--log-config with the class form starts; records flow while serving; after SIGINT (Ctrl-C) nothing is lost."""
    app, address = serve(fw_fabric, start_app, tmp_path, SHOP_SHUTDOWN_RECORDS="3")
    for n in range(REQUESTS):
        status, body = http_get(address, f"/order/{n}")
        assert status == 200, body
    assert http_get(address, "/boom")[0] == 200
    assert fw_fabric.wait_for("shop-api", REQUESTS + 1, name="shop.api"), "records did not flow while serving"
    app.signal(signal.SIGINT)
    app.wait(20)
    fw_fabric.settle()

    api = fw_fabric.records("shop-api", "shop.api")
    orders = exactly_once((r for r in api if r.getMessage().startswith("order ")), key=lambda r: r.order)
    assert_delivered(orders, range(REQUESTS), "uvicorn app records")
    for n, record in orders.items():
        assert record.getMessage() == f"order {n} placed"
        assert (record.levelname, record.service, record.process) == ("INFO", "shop-api", app.pid)
        assert type(record.order) is int and record.amount == n * 1.5
    (boom,) = [r for r in api if r.getMessage() == "boom failed"]
    assert boom.levelname == "ERROR" and boom.path == "/boom"
    assert boom.exc_text.startswith("Traceback (most recent call last):")
    assert boom.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
    stopping = exactly_once((r for r in api if r.getMessage() == "api stopping"), key=lambda r: r.step)
    assert_delivered(stopping, range(3), "records logged during shutdown")
    access = exactly_once(fw_fabric.records("shop-api", "uvicorn.access"), key=lambda r: r.getMessage())
    assert len(access) == REQUESTS + 2, sorted(access)  # /health, the orders and /boom
    server = [r.getMessage() for r in fw_fabric.records("shop-api", "uvicorn.error")]
    assert f"Started server process [{app.pid}]" in server, server
    assert f"Finished server process [{app.pid}]" in server, server
    fw_fabric.check()


def quiet_sigterm(fabric: Fabric, start_app: Callable[..., App], tmp_path: Path, **env: str) -> App:
    """Serve an app that logs only on its way out; SIGTERM it while the broker is frozen for half a second.

    The app's socket connects at its first record, during shutdown; the broker
    is frozen (SIGSTOP) around the signal, as a busy or distant broker would
    be, so the handshake cannot finish before uvicorn re-raises SIGTERM. Only
    a flush on the way out, waiting within ``linger``, delivers those records.
    """
    quiet = ("--log-level", "warning", "--no-access-log")
    app, _ = serve(fabric, start_app, tmp_path, *quiet, SHOP_SHUTDOWN_RECORDS="3", **env)
    fabric.broker.signal(signal.SIGSTOP)
    try:
        app.signal(signal.SIGTERM)
        time.sleep(0.5)  # a duration: the broker stays frozen half a second around the signal
    finally:
        fabric.broker.signal(signal.SIGCONT)
    assert app.wait(20) == -signal.SIGTERM, "uvicorn re-raises SIGTERM: it should die of it"
    fabric.settle()
    return app


def check_shutdown_records(fabric: Fabric, app: App) -> None:
    """The three records the app logged during shutdown arrived, once each."""
    stopping = exactly_once(fabric.records("shop-api", "shop.api"), key=lambda r: r.step)
    assert_delivered(stopping, range(3), "records logged during shutdown")
    for record in stopping.values():
        assert (record.getMessage(), record.levelname, record.process) == ("api stopping", "INFO", app.pid)
    fabric.check()


def test_sigterm_delivers_what_a_quiet_app_logs_during_shutdown(
    fw_fabric: Fabric, start_app: Callable[..., App], tmp_path: Path
) -> None:
    """An app that logs only on its way out, the broker slow to answer: after SIGTERM all three records arrive."""
    check_shutdown_records(fw_fabric, quiet_sigterm(fw_fabric, start_app, tmp_path))


def test_logging_shutdown_in_the_lifespan_delivers_before_sigterm_is_re_raised(
    fw_fabric: Fabric, start_app: Callable[..., App], tmp_path: Path
) -> None:
    """The same shutdown, with ``logging.shutdown()`` at the end of the lifespan: all three records arrive."""
    check_shutdown_records(fw_fabric, quiet_sigterm(fw_fabric, start_app, tmp_path, SHOP_SHUTDOWN_FLUSH="1"))


def run_after_install(fabric: Fabric, start_app: Callable[..., App], *options: str) -> None:
    """``uvicorn_run.py PORT OPTIONS``: REQUESTS orders, then Ctrl-C; every record after install() arrived."""
    port = free_port()
    env = fabric.env(LOGFABRIC_SERVICE="shop-run")
    app = start_app([sys.executable, str(APPS / "uvicorn_run.py"), str(port), *options], env=env)
    app.wait_http(f"127.0.0.1:{port}", "/health")
    for n in range(REQUESTS):
        assert http_get(f"127.0.0.1:{port}", f"/order/{n}")[0] == 200
    app.signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, then Python exits through atexit
    app.wait(20)
    fabric.settle()
    (before,) = fabric.records("shop-run", "shop.boot")
    assert before.getMessage() == "before uvicorn.run()"
    orders = exactly_once(fabric.records("shop-run", "shop.api"), key=lambda r: getattr(r, "order", None))
    assert_delivered(orders, [*range(REQUESTS), None], "app records after uvicorn.run()")  # None: "api stopping"
    fabric.check()


def test_install_then_uvicorn_run_keeps_shipping(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """``fabric.install()`` then ``uvicorn.run()``: the app's records logged while serving arrive too."""
    run_after_install(fw_fabric, start_app)


def test_install_then_uvicorn_run_with_log_config_none_keeps_shipping(
    fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """``uvicorn.run(..., log_config=None)`` keeps the logging install() set up: every record arrives."""
    run_after_install(fw_fabric, start_app, "keep")
