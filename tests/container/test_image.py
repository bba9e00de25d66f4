"""The real broker image: built from deploy/Dockerfile, run as the manifests run it."""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import fabric
from tests.helpers.capture import Capture
from tests.helpers.net import ROOT, free_ports
from tests.helpers.waiting import send_until, wait_until

IMAGE = "logfabric-broker:test"
REQUIRED = os.environ.get("LOGFABRIC_REQUIRE_DOCKER") == "1"

pytestmark = [pytest.mark.docker, pytest.mark.slow]
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def _docker_client() -> Any:
    """A client for a reachable daemon, or a skip (a failure when CI requires Docker)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:
        reason = f"no Docker daemon reachable ({type(exc).__name__}: {exc}); the image tests need one"
        if REQUIRED:
            pytest.fail(f"LOGFABRIC_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)


def _default_base_image() -> str:
    for line in (ROOT / "deploy/Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            return line.split("=", 1)[1].strip()
    pytest.fail("deploy/Dockerfile declares no ARG BASE_IMAGE default")


def _base_image_available(client: Any, base: str) -> None:
    """Pull the base image if needed; skip (fail when required) if no registry serves it."""
    import docker

    try:
        client.images.get(base)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(base)
    except docker.errors.APIError as exc:
        reason = (
            f"base image {base} is not present and cannot be pulled ({exc.explanation or exc}); "
            "set LOGFABRIC_BASE_IMAGE to a local image (see .ci/prepare-docker)"
        )
        if REQUIRED:
            pytest.fail(f"LOGFABRIC_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)


def _manifest_container() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/statefulset.yaml").read_text()))
    workload = next(d for d in docs if d and d.get("kind") in ("StatefulSet", "Deployment"))
    return dict(workload["spec"]["template"]["spec"]["containers"][0])


def _manifest_env() -> dict[str, str]:
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/configmap.yaml").read_text()))
    return {k: str(v) for d in docs if d and d.get("kind") == "ConfigMap" for k, v in d["data"].items()}


@pytest.fixture(scope="module")
def image() -> str:
    """Build the image once per run (the local base image in CI, the public one elsewhere)."""
    client = _docker_client()
    base = os.environ.get("LOGFABRIC_BASE_IMAGE")
    buildargs = {"BASE_IMAGE": base} if base else {}
    _base_image_available(client, base or _default_base_image())
    started = time.monotonic()
    client.images.build(
        path=str(ROOT), dockerfile="deploy/Dockerfile", tag=IMAGE, buildargs=buildargs, network_mode="host", rm=True
    )
    print(f"image built in {time.monotonic() - started:.1f} s")
    return IMAGE


@pytest.fixture
def broker_container(image: str) -> Iterator[dict[str, Any]]:
    """The image run with the manifest's command, args and env, ports moved to free ones."""
    from testcontainers.core.container import DockerContainer

    spec = _manifest_container()
    env = _manifest_env()
    ports = dict(zip(("pub", "push", "egress", "http"), free_ports(4), strict=True))
    env.update(
        LOGFABRIC_BROKER_PUB_INGEST=f"tcp://127.0.0.1:{ports['pub']}",
        LOGFABRIC_BROKER_PUSH_INGEST=f"tcp://127.0.0.1:{ports['push']}",
        LOGFABRIC_BROKER_EGRESS=f"tcp://127.0.0.1:{ports['egress']}",
        LOGFABRIC_BROKER_HTTP=f"127.0.0.1:{ports['http']}",
    )
    container = (
        DockerContainer(image).with_kwargs(network_mode="host", read_only=True, user="10001").with_tmpfs_mount("/tmp")
    )
    for key, value in env.items():
        container = container.with_env(key, value)
    command = list(spec.get("command") or []) + list(spec.get("args") or [])
    if command[:2] == ["logfabric", "broker"]:
        command = command[2:]
    if command:
        container = container.with_command(command)
    container.start()
    try:
        http = f"http://127.0.0.1:{ports['http']}"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{http}/readyz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        if not wait_until(ready, timeout=30, interval=0.2):
            logs = container.get_wrapped_container().logs().decode(errors="replace")
            pytest.fail(f"the container never became ready:\n{logs}")
        yield {"container": container, "ports": ports, "http": http, "env": env}
    finally:
        container.stop()


class TestImage:
    def test_runs_as_non_root_on_a_read_only_root(self, broker_container: dict[str, Any]) -> None:
        """The broker runs as uid 10001 and needs no writable root filesystem."""
        wrapped = broker_container["container"].get_wrapped_container()
        wrapped.reload()
        assert wrapped.attrs["Config"]["User"] == "10001"
        assert wrapped.attrs["HostConfig"]["ReadonlyRootfs"] is True
        exit_code, out = wrapped.exec_run(["id", "-u"])
        assert exit_code == 0
        assert out.decode().strip() == "10001"

    def test_records_cross_the_containerised_broker(self, broker_container: dict[str, Any]) -> None:
        """Records pushed from the host come back, complete and in order, to a host subscriber."""
        ports = broker_container["ports"]
        capture = Capture()

        def got() -> list[str]:
            return [r.getMessage() for r in capture.records]

        listener = fabric.ZmqListener(f"tcp://127.0.0.1:{ports['egress']}", capture)
        handler = fabric.ZmqHandler(f"tcp://127.0.0.1:{ports['push']}", service="container-test")
        log = logging.getLogger("container.test")
        log.propagate = False
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        with listener:
            try:
                # The subscription needs a moment to reach the broker: probe until one returns.
                send_until(lambda _: log.info("probe"), lambda: "probe" in got(), timeout=20)
                assert "probe" in got(), "no probe record came back through the container"
                for i in range(500):
                    log.info("record %d", i)
                wait_until(lambda: "record 499" in got(), timeout=15, interval=0.05)
                assert [m for m in got() if m.startswith("record ")] == [f"record {i}" for i in range(500)]
                assert listener.stats["gaps"] == 0
                assert listener.stats["malformed"] == 0
            finally:
                log.removeHandler(handler)
                handler.close()

    def test_sigterm_drains_and_exits_zero(self, broker_container: dict[str, Any]) -> None:
        """SIGTERM turns the broker unready, drains, logs it and exits 0."""
        wrapped = broker_container["container"].get_wrapped_container()
        wrapped.kill(signal="SIGTERM")
        result = wrapped.wait(timeout=30)
        logs = wrapped.logs().decode(errors="replace")
        assert result["StatusCode"] == 0, logs
        assert "drained" in logs
        assert "stopped cleanly" in logs
