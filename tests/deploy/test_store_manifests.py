"""The record store in the image and the manifests: on, on a volume of each pod's own, with room for its retention."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from broker import BrokerConfig

yaml = pytest.importorskip("yaml", reason="PyYAML not installed: cannot parse the manifests (pip install pyyaml)")

ROOT = Path(__file__).resolve().parents[2]
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "": 1}


def _quantity(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|)", str(text))
    assert match, f"unexpected storage quantity {text!r}"
    return int(match[1]) * _UNITS[match[2]]


def _statefulset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "StatefulSet"]
    return found


def _config(docs: list[dict[str, Any]]) -> BrokerConfig:
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "logfabric-broker"]
    return BrokerConfig.load(env={k: str(v) for k, v in configmap["data"].items()})


@pytest.mark.parametrize("which", ["base_docs", "overlay_docs"])
def test_store_is_on_a_claim_of_each_pod(which: str, request: pytest.FixtureRequest) -> None:
    """The ConfigMap turns the store on under the mount of a volumeClaimTemplate larger than the retention."""
    docs = request.getfixturevalue(which)
    config = _config(docs)
    assert config.store is not None, "the store should be on in the manifests"
    spec = _statefulset(docs)["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    claims = {c["metadata"]["name"]: c for c in spec["volumeClaimTemplates"]}
    mounts = [m for m in container["volumeMounts"] if config.store.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1 and mounts[0]["name"] in claims, f"{config.store} is not on a claimed volume"
    claim = claims[mounts[0]["name"]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    size = _quantity(claim["resources"]["requests"]["storage"])
    assert size >= config.retention_bytes * 1.25, "leave room beyond the retention bytes"
    assert not mounts[0].get("readOnly", False)
    assert spec["template"]["spec"]["securityContext"]["fsGroup"] == 10001, "the volume must be writable by the broker"


def test_image_turns_the_store_on_in_a_volume() -> None:
    """deploy/Dockerfile sets LOGFABRIC_BROKER_STORE inside a VOLUME the broker's user owns."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    store = re.search(r"^\s+LOGFABRIC_BROKER_STORE=(/\S+)", text, re.MULTILINE)
    volume = re.search(r"^VOLUME (\S+)$", text, re.MULTILINE)
    assert store and volume and store[1].startswith(volume[1].rstrip("/") + "/")
    assert f"chown 10001:10001 {volume[1]}" in text
