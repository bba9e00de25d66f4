"""Fixtures for the manifest tests: the kustomize base and overlay, each rendered once by kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML not installed: cannot parse the manifests (pip install pyyaml)")

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s"
OVERLAY = ROOT / "deploy" / "overlays" / "three-replicas"
CURVE_OVERLAY = ROOT / "deploy" / "overlays" / "curve"


def render(directory: Path, what: str) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY`` parsed into manifests: a skip without kubectl, a failure on errors."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(f"kubectl not installed: cannot render the kustomize {what}")
    shown = directory.relative_to(ROOT)
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {shown} failed:\n{result.stderr}")
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert docs, f"kubectl kustomize {shown} rendered nothing"
    return docs


@pytest.fixture(scope="session")
def base_docs() -> list[dict[str, Any]]:
    """Every manifest of the base (deploy/k8s), as kustomize renders it."""
    return render(BASE, "base")


@pytest.fixture(scope="session")
def overlay_docs() -> list[dict[str, Any]]:
    """Every manifest of the three-replica overlay, as kustomize renders it."""
    return render(OVERLAY, "overlay")


@pytest.fixture(scope="session")
def curve_docs() -> list[dict[str, Any]]:
    """Every manifest of the CurveZMQ overlay, as kustomize renders it."""
    return render(CURVE_OVERLAY, "curve overlay")
