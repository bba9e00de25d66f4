"""The level-control overlay (deploy/overlays/control): valid, on CurveZMQ, a configuration the broker runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker import Broker, BrokerConfig
from broker.config import ENV_PREFIX
from fabric.curve import generate
from tests.deploy.conftest import ROOT, render

pytest.importorskip("yaml", reason="PyYAML not installed: cannot parse the manifests (pip install pyyaml)")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def control_docs() -> list[dict[str, Any]]:
    """Every manifest of the control overlay, as kustomize renders it."""
    return render(ROOT / "deploy" / "overlays" / "control", "control overlay")


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (hit,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return hit


def test_strictly_valid(control_docs: list[dict[str, Any]]) -> None:
    """The overlay passes kubernetes-validate --strict against the newest Kubernetes schema it ships."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    version = kv.utils.latest_version()
    errors = []
    for doc in control_docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, errors


def test_port_5560_everywhere_producers_and_operators_reach_it(control_docs: list[dict[str, Any]]) -> None:
    """The container, both Services and the NetworkPolicy (producers and operators only) carry 5560."""
    (container,) = _one(control_docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]["containers"]
    assert {"name": "control", "containerPort": 5560, "protocol": "TCP"} in container["ports"]
    for service in ("logfabric", "logfabric-headless"):
        ports = _one(control_docs, "Service", service)["spec"]["ports"]
        assert {"name": "control", "port": 5560, "targetPort": "control", "protocol": "TCP"} in ports
    rules = _one(control_docs, "NetworkPolicy", "logfabric")["spec"]["ingress"]
    (rule,) = [r for r in rules if {"port": 5560, "protocol": "TCP"} in r["ports"]]
    roles = {peer["podSelector"]["matchLabels"]["logfabric.io/role"] for peer in rule["from"]}
    assert roles == {"producer", "operator"}


def test_the_broker_starts_with_these_settings(control_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """With keys laid out as the mounts would hold them, the real broker serves control with an operators list."""
    env = {k: str(v) for k, v in _one(control_docs, "ConfigMap", "logfabric-broker")["data"].items()}
    config = BrokerConfig.load(env=env)
    assert config.control == "tcp://*:5560" and config.curve and config.curve_operators is not None
    (container,) = _one(control_docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]["containers"]
    assert config.curve_operators in [m["mountPath"] for m in container["volumeMounts"]]
    root = tmp_path / "mounts"
    for key in ("CURVE_PRODUCERS", "CURVE_SUBSCRIBERS", "CURVE_OPERATORS"):
        (root / env[ENV_PREFIX + key].lstrip("/")).mkdir(parents=True)
    secret_file = root / str(config.curve_secret_key).lstrip("/")
    secret_file.parent.mkdir(parents=True)
    secret_file.write_bytes(generate("broker", tmp_path / "made")[1].read_bytes())
    operator = generate("jane", tmp_path / "made")[0]
    (root / str(config.curve_operators).lstrip("/") / operator.name).write_bytes(operator.read_bytes())
    moved = {k: str(root / v.lstrip("/")) if k.startswith(ENV_PREFIX + "CURVE_") else v for k, v in env.items()}
    local = BrokerConfig.load(env=moved).with_overrides(
        pub_ingest="tcp://127.0.0.1:*",
        push_ingest="tcp://127.0.0.1:*",
        egress="tcp://127.0.0.1:*",
        control="tcp://127.0.0.1:*",
        history=None,
        store=None,
        http=None,
    )
    broker = Broker(local).start()
    try:
        assert broker.allowed_keys()["operators"] == 1
        assert "control" in broker.endpoints
    finally:
        broker.stop(drain_timeout=0)
