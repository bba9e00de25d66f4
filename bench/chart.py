"""Draw docs/perf/chart.png from the results of one run (matplotlib, the 'bench' extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OURS = "#1f77b4"
ANCHOR = "#bbbbbb"


def _bars(ax: Any, labels: list[str], values: list[float], ours: list[bool], title: str, unit: str) -> None:
    colours = [OURS if o else ANCHOR for o in ours]
    y = range(len(labels))
    ax.barh(list(y), values, color=colours)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.3g}" if v < 1000 else f" {v:,.0f}", va="center", fontsize=6)


def draw(results: dict[str, Any], path: Path) -> None:
    """One panel per benchmark present in ``results``; ours in blue, anchors in grey."""
    panels: list[tuple[list[str], list[float], list[bool], str, str]] = []
    if "P1" in results:
        us = results["P1"]["us_per_call"]
        panels.append(
            (
                list(us),
                list(us.values()),
                [n.startswith("ZmqHandler") for n in us],
                "P1 per call, best case: 1 call site, 1 logger",
                "µs",
            )
        )
        if "realistic" in results["P1"]:
            us = results["P1"]["realistic"]["us_per_call"]
            service = results["P1"]["realistic"].get("service", {})
            panels.append(
                (
                    list(us),
                    list(us.values()),
                    [n.startswith("ZmqHandler") for n in us],
                    f"P1 per call, realistic: {service.get('call_sites', '?')} call sites, "
                    f"{service.get('loggers', '?')} loggers",
                    "µs",
                )
            )
    if "P2" in results:
        r = results["P2"]
        panels.append(
            (
                ["naive direct", "ours via broker"],
                [r["naive_median_rps"], r["ours_median_rps"]],
                [False, True],
                "P2 end to end",
                "records/s",
            )
        )
    if "P3" in results:
        labels, values, ours = [], [], []
        for p, r in results["P3"].items():
            labels += [f"{p}: raw zmq.proxy", f"{p}: raw, 2 hops", f"{p}: broker"]
            values += [r["raw_median_rps"], r["raw_two_hops_median_rps"], r["broker_median_rps"]]
            ours += [False, False, True]
        panels.append((labels, values, ours, "P3 broker forwarding", "records/s"))
    if "P4" in results:
        rps = results["P4"]["records_per_s"]
        panels.append(
            (list(rps), list(rps.values()), [n.startswith("ZmqListener") for n in rps], "P4 subscriber", "records/s")
        )
    if "P5" in results:
        r = results["P5"]
        panels.append(
            (list(r), [v["bytes"] for v in r.values()], [n != "json __dict__ (anchor)" for n in r], "P5 size", "bytes")
        )
    if "P7" in results:
        labels, values, ours = [], [], []
        for p, r in results["P7"].items():
            labels += [f"{p}: plaintext", f"{p}: CURVE"]
            values += [r["plaintext_median_rps"], r["curve_median_rps"]]
            ours += [False, True]
        panels.append((labels, values, ours, "P7 CurveZMQ cost", "records/s"))
    if not panels:
        return
    cols = 2
    rows = (len(panels) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _bars(ax, *panel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    machine = results.get("machine", {})
    fig.suptitle(
        f"logfabric benchmarks ({machine.get('cpus')} CPUs, Python {machine.get('python')}, "
        f"libzmq {machine.get('libzmq')}, {machine.get('when')}); ours in blue",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
