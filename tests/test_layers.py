"""The layers: the client library (fabric) never imports the broker, ``import fabric`` loads no command,
and the broker's modules form no cycle."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import broker
from tests.helpers.net import child_env

ROOT = Path(__file__).resolve().parents[1]

#: Imports every fabric module (those of optional extras when installed), then lists what got imported.
_IMPORT_ALL_OF_FABRIC = """
import importlib, json, pkgutil, sys
import fabric
skipped = []
for info in pkgutil.walk_packages(fabric.__path__, "fabric."):
    try:
        importlib.import_module(info.name)
    except ImportError as exc:  # an optional extra that is not installed (e.g. OTLP's)
        skipped.append(f"{info.name}: {exc}")
print(json.dumps({"modules": sorted(sys.modules), "skipped": skipped}))
"""


def test_no_fabric_module_imports_the_broker() -> None:
    """Importing every module of fabric, in a fresh interpreter, leaves no broker module in sys.modules."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL_OF_FABRIC],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=True,
    )
    seen = json.loads(result.stdout)
    assert [m for m in seen["modules"] if m == "broker" or m.startswith("broker.")] == []
    assert "fabric.cli" in seen["modules"]


def test_import_fabric_loads_no_command_module() -> None:
    """``import fabric`` in a fresh interpreter loads neither fabric.tail nor the other commands' modules."""
    result = subprocess.run(
        [sys.executable, "-c", "import fabric, json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "fabric.listener" in loaded
    assert loaded & {"fabric.tail", "fabric.export", "fabric.cli", "fabric.otlp"} == set()


def test_safe_formatter_is_one_class_under_both_names() -> None:
    """fabric.SafeFormatter and fabric.tail.SafeFormatter (and escape) are the same objects."""
    import fabric
    import fabric._safe_format
    import fabric.tail

    assert fabric.SafeFormatter is fabric.tail.SafeFormatter is fabric._safe_format.SafeFormatter
    assert fabric.tail.escape is fabric._safe_format.escape


def test_fabric_source_names_no_broker_import() -> None:
    """No fabric module imports broker, not even inside a function or under TYPE_CHECKING."""
    offenders = []
    for path in sorted((ROOT / "fabric").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "broker"]
    assert offenders == []


def _broker_imports() -> dict[str, set[str]]:
    """Each broker module's imports of broker modules, TYPE_CHECKING and function-level ones included.

    ``broker`` stands for the package's ``__init__``; ``from broker import x`` counts as importing ``broker.x``
    when ``x`` is a module, and the package otherwise.
    """
    root = Path(broker.__path__[0])
    modules = {"broker": root / "__init__.py"}
    for info in pkgutil.walk_packages(broker.__path__, "broker."):
        modules[info.name] = root / (info.name.split(".", 1)[1].replace(".", "/") + ".py")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "broker":
                found |= {f"broker.{a.name}" if f"broker.{a.name}" in modules else "broker" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("broker."):
                found.add(node.module or "")
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "broker"}
        graph[name] = found
    return graph


def test_broker_modules_import_no_cycle() -> None:
    """The broker's modules import each other without a cycle (no module reaches itself again)."""
    graph = _broker_imports()
    assert "broker.broker" in graph and "broker.http" in graph

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())
        return seen

    cycles = sorted(m for m in graph if m in reaches(m))
    assert cycles == []


@pytest.mark.parametrize("module", ["broker.http", "broker.metrics"])
def test_http_and_metrics_do_not_import_the_broker_class(module: str) -> None:
    """The HTTP side and the metrics read a broker through a protocol, not by importing the module that starts them."""
    graph = _broker_imports()
    assert "broker.broker" not in graph[module] and "broker" not in graph[module]
