"""The CurveZMQ overlay (deploy/overlays/curve): valid, minimal, and a configuration the real broker starts with."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest

from broker import Broker, BrokerConfig
from broker.config import ENV_PREFIX
from fabric.curve import generate

yaml = pytest.importorskip("yaml", reason="PyYAML not installed: cannot parse the manifests (pip install pyyaml)")

pytestmark = pytest.mark.timeout(120)

# The curve overlay's ConfigMap keys; the last one accepts the group bit that fsGroup needs.
CURVE_KEYS = ("CURVE_SECRET_KEY", "CURVE_PRODUCERS", "CURVE_SUBSCRIBERS", "ALLOW_OPEN_SECRET_KEY")


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind} {name}, found {len(hits)}"
    return hits[0]


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["broker"]
    return dict(containers[0])


def _volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = _one(docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec["volumes"]}


def _env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {k: str(v) for k, v in _one(docs, "ConfigMap", "logfabric-broker")["data"].items()}


def _secret_mounts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mountPath -> the secret volume source, for every Secret volume the broker mounts."""
    volumes = _volumes(docs)
    return {
        m["mountPath"]: volumes[m["name"]]["secret"]
        for m in _container(docs)["volumeMounts"]
        if "secret" in volumes.get(m["name"], {})  # the store's mount is a claim, not a pod volume
    }


def test_strictly_valid(curve_docs: list[dict[str, Any]]) -> None:
    """The overlay passes kubernetes-validate --strict against the newest Kubernetes schema it ships."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    version = kv.utils.latest_version()
    errors = []
    for doc in curve_docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert errors == []


def test_changes_only_curve_settings_and_secret_mounts(
    base_docs: list[dict[str, Any]], curve_docs: list[dict[str, Any]]
) -> None:
    """Against the base, the overlay adds four ConfigMap keys and three Secret volumes, and nothing else."""
    assert set(_env(curve_docs)) - set(_env(base_docs)) == {ENV_PREFIX + k for k in CURVE_KEYS}
    assert set(_volumes(curve_docs)) - set(_volumes(base_docs)) == {
        "curve-server",
        "curve-producers",
        "curve-subscribers",
    }

    def strip(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        docs = copy.deepcopy(docs)
        data = _one(docs, "ConfigMap", "logfabric-broker")["data"]
        for key in CURVE_KEYS:
            data.pop(ENV_PREFIX + key, None)
        spec = _one(docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]
        spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("curve-")]
        container = spec["containers"][0]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if not m["name"].startswith("curve-")]
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    assert strip(curve_docs) == strip(base_docs)


def test_no_key_material_in_the_manifests(curve_docs: list[dict[str, Any]]) -> None:
    """The overlay ships no Secret: keys are created in the cluster, never committed."""
    assert [d for d in curve_docs if d["kind"] == "Secret"] == []
    assert "secret-key" not in yaml.safe_dump_all(curve_docs)


def test_secret_volumes_are_read_only_and_private(curve_docs: list[dict[str, Any]]) -> None:
    """Each Secret is mounted read-only, with no access for others (the broker reads it through fsGroup)."""
    container = _container(curve_docs)
    volumes = _volumes(curve_docs)
    mounts = [m for m in container["volumeMounts"] if "secret" in volumes.get(m["name"], {})]
    assert len(mounts) == 3
    for mount in mounts:
        assert mount.get("readOnly") is True, mount
        assert "subPath" not in mount, "a subPath mount never sees Secret updates (key rotation)"
        mode = volumes[mount["name"]]["secret"]["defaultMode"]
        assert mode & stat.S_IRWXO == 0 and mode & stat.S_IWUSR == 0, oct(mode)
    spec = _one(curve_docs, "StatefulSet", "logfabric")["spec"]["template"]["spec"]
    assert spec["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]


def test_settings_point_into_the_mounts(curve_docs: list[dict[str, Any]]) -> None:
    """The secret key file is an item of a mounted Secret; each allow-list is a whole mounted Secret."""
    config = BrokerConfig.load(env=_env(curve_docs))
    assert config.curve
    mounts = _secret_mounts(curve_docs)
    key = Path(str(config.curve_secret_key))
    server = mounts[str(key.parent)]
    assert key.name in [item["path"] for item in server.get("items", [])]
    for directory in (config.curve_producers, config.curve_subscribers):
        assert "items" not in mounts[str(directory)], "an allow-list mounts every key of its Secret"
    names = {s["secretName"] for s in mounts.values()}
    assert len(names) == 3, "server key, producers and subscribers are separate Secrets"


def test_the_broker_starts_with_these_settings(curve_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """With keys laid out as the mounts would hold them, the real broker loads the ConfigMap and serves CURVE."""
    env = _env(curve_docs)
    root = tmp_path / "mounts"
    mounts = _secret_mounts(curve_docs)
    for path in mounts:
        (root / path.lstrip("/")).mkdir(parents=True)
    config = BrokerConfig.load(env=env)
    secret_file = root / str(config.curve_secret_key).lstrip("/")
    _, secret = generate("broker", tmp_path / "made")
    secret_file.write_bytes(secret.read_bytes())
    secret_file.chmod(int(_secret_mounts(curve_docs)[str(Path(str(config.curve_secret_key)).parent)]["defaultMode"]))
    producer = generate("checkout", tmp_path / "made")[0]
    (root / str(config.curve_producers).lstrip("/") / producer.name).write_bytes(producer.read_bytes())
    moved = {k: str(root / v.lstrip("/")) if k.startswith(ENV_PREFIX + "CURVE_") else v for k, v in env.items()}
    local = BrokerConfig.load(env=moved).with_overrides(
        pub_ingest="tcp://127.0.0.1:*", push_ingest="tcp://127.0.0.1:*", egress="tcp://127.0.0.1:*", http=None
    )
    broker = Broker(local).start()
    try:
        assert broker.allowed_keys() == {"producers": 1, "subscribers": 0}
    finally:
        broker.stop(drain_timeout=0)
