"""Django: a project whose ``LOGGING`` uses the class form; and ``fabric.install()`` before ``django.setup()``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once
from tests.helpers.net import free_port, http_get

pytestmark = pytest.mark.timeout(90)

SITE = APPS / "djsite"
MANAGE = [sys.executable, str(SITE / "manage.py")]


def test_manage_py_check_starts_with_the_class_form(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """``manage.py check`` configures LOGGING (a ZmqHandler) and finishes cleanly."""
    out = start_app([*MANAGE, "check"], env=fw_fabric.env(), cwd=SITE).finish(timeout=60)
    assert "System check identified no issues" in out, out


def run_command(fabric: Fabric, start_app: Callable[..., App], *options: str) -> None:
    """Run ``manage.py shiplogs 200 OPTIONS``; its 200 records and its traceback arrive exactly once."""
    count = 200
    command = start_app([*MANAGE, "shiplogs", str(count), *options], env=fabric.env(), cwd=SITE)
    command.finish(timeout=60)
    assert fabric.wait_for("shop-django", count + 1, name="shop.jobs")
    fabric.settle()

    jobs = exactly_once(fabric.records("shop-django", "shop.jobs"), key=lambda r: r.job)
    assert_delivered(jobs, range(-1, count), "management command records")
    for n in range(count):
        record = jobs[n]
        assert (record.getMessage(), record.levelname, record.process) == (f"job {n} done", "INFO", command.pid)
        assert record.ok is True
    failed = jobs[-1]
    assert failed.getMessage() == "job failed" and failed.levelname == "ERROR"
    assert failed.exc_text.startswith("Traceback (most recent call last):")
    assert failed.exc_text.rstrip().endswith("KeyError: 'missing'")
    assert failed.exceptions[0]["type"] == "builtins.KeyError"
    fabric.check()


def test_management_command_delivers_every_record_once(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """A management command's 200 records and its traceback arrive exactly once, with typed extras."""
    run_command(fw_fabric, start_app)


def test_factory_key_form_works_on_every_python(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """``"()": "fabric.ZmqHandler"`` in LOGGING: the same records arrive, on 3.12.1 too."""
    run_command(fw_fabric, start_app, "--settings", "djsite.settings_factory")


def test_runserver_requests_and_errors_arrive_once(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """Under ``runserver``: each view's record, each request line and the 500's traceback arrive exactly once."""
    address = f"127.0.0.1:{free_port()}"
    server = start_app([*MANAGE, "runserver", "--noreload", address], env=fw_fabric.env(), cwd=SITE)
    server.wait_http(address, "/health")
    requests = 40
    for n in range(requests):
        status, body = http_get(address, f"/order/{n}")
        assert (status, body) == (200, str(n))
    assert http_get(address, "/boom")[0] == 500
    assert fw_fabric.wait_for("shop-django", requests, name="shop.views")
    server.signal(signal.SIGINT)  # Ctrl-C
    server.wait(20)
    fw_fabric.settle()

    views = exactly_once(fw_fabric.records("shop-django", "shop.views"), key=lambda r: r.order)
    assert_delivered(views, range(requests), "view records")
    for n, record in views.items():
        assert (record.getMessage(), record.levelname, record.amount) == (f"order {n} placed", "INFO", n * 1.5)
        assert type(record.order) is int
    served = exactly_once(fw_fabric.records("shop-django", "django.server"), key=lambda r: r.getMessage().split('"')[1])
    expected = {"GET /health HTTP/1.1", "GET /boom HTTP/1.1"} | {f"GET /order/{n} HTTP/1.1" for n in range(requests)}
    assert_delivered(served, expected, "django.server request records")
    (error,) = fw_fabric.records("shop-django", "django.request")
    assert error.getMessage() == "Internal Server Error: /boom" and error.levelname == "ERROR"
    assert error.status_code == 500
    assert error.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert 'in boom\n    raise ZeroDivisionError("division by zero")' in error.exc_text
    fw_fabric.check()


def test_install_then_django_setup_keeps_shipping(fw_fabric: Fabric, start_app: Callable[..., App]) -> None:
    """``fabric.install()`` then ``django.setup()``: the records logged after setup arrive too."""
    after = 20
    env = fw_fabric.env(LOGFABRIC_SERVICE="shop-boot")
    start_app([sys.executable, str(SITE / "install_then_setup.py"), str(after)], env=env, cwd=SITE).finish(timeout=60)
    fw_fabric.settle()
    steps = exactly_once(fw_fabric.records("shop-boot", "shop.boot"), key=lambda r: r.step)
    assert_delivered(steps, range(after + 1), "records around django.setup()")
    fw_fabric.check()
