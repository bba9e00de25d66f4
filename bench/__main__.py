"""``make bench`` / ``python -m bench``: run the benchmarks, print tables, write docs/perf/.

Every benchmark compares an anchor and ours in the same run; the figures that
matter are the ratios. ``--quick`` is a smoke run (under about two minutes);
``--only P1,P5`` runs a subset (results.json and the chart then hold only those);
``--callgrind`` adds P1 in instructions per call (valgrind), which load does not move.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from bench import curve, endtoend, forwarding, instructions, outage, producer, sender, size, subscriber

ALL = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8")


def _p3_table(p3: dict[str, Any], rounds: int) -> str:
    lines = [
        f"{'path':<6} {'raw proxy':>10} {'raw 2 hops':>11} {'broker':>10} {'vs raw':>7} {'vs 2 hops':>10}"
        "  lost(raw/2 hops/broker)"
    ]
    for path, r in p3.items():
        lines.append(
            f"{path:<6} {r['raw_median_rps']:>10,} {r['raw_two_hops_median_rps']:>11,} {r['broker_median_rps']:>10,}"
            f" {r['ratio']:>7} {r['ratio_vs_two_hops']:>10}"
            f"  {r['lost']['raw']}/{r['lost']['raw2']}/{r['lost']['broker']}"
        )
    return "\n".join(lines)


def _p7_table(p7: dict[str, Any]) -> str:
    lines = [f"{'path':<7} {'plaintext':>12} {'curve':>12} {'ratio':>7}  lost(plain/curve)"]
    for path, r in p7.items():
        lines.append(
            f"{path:<7} {r['plaintext_median_rps']:>12,} {r['curve_median_rps']:>12,} {r['ratio']:>7}"
            f"  {r['lost']['plaintext']}/{r['lost']['curve']}"
        )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the performance issue: the figure from this run and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, bound: float, at_most: bool) -> None:
        met = value is not None and (value <= bound if at_most else value >= bound)
        out.append({"target": name, "value": value, "bound": bound, "met": met})

    if "P1" in results:
        ours = "ZmqHandler push protobuf"
        for label, r in (("best case", results["P1"]), ("realistic", results["P1"].get("realistic"))):
            if r is None:
                continue
            name = f"P1 {label}: ZmqHandler (push, protobuf) <= 0.8x QueueHandler->SimpleQueue"
            add(name, r["vs_queue"][ours], 0.8, True)
            floor = r["us_per_call"]["NullHandler (floor)"]
            add(f"P1 {label}: ZmqHandler (push, protobuf) <= floor + 5 us", r["us_per_call"][ours], floor + 5.0, True)
        add("P1 ZmqHandler (push, protobuf) <= 0.5x pyzmq PUBHandler", results["P1"]["vs_pubhandler"][ours], 0.5, True)
    if "P8" in results:
        r = results["P8"]
        cpu = r["sender thread"]["cpu_us"] / r["before (one send per call)"]["cpu_us"]
        add("P8 CPU per record of the producer process < 1.0x the handler before the sender thread", cpu, 1.0, True)
    if "P2" in results:
        add("P2 end to end >= 2.5x naive", results["P2"]["ratio"], 2.5, False)
    if "P3" in results:
        for path, r in results["P3"].items():
            add(f"P3 broker ({path}) >= 0.9x raw proxy", r["ratio"], 0.9, False)
    if "P4" in results:
        add("P4 ZmqListener (protobuf) >= 2x naive", results["P4"]["vs_naive"]["ZmqListener protobuf"], 2.0, False)
    if "P5" in results:
        add("P5 protobuf message <= 0.5x JSON __dict__", results["P5"]["protobuf"]["ratio"], 0.5, True)
    if "P6" in results:
        r = results["P6"]
        out.append({"target": "P6 memory <= hwm x size + 10 MB", "value": r["rss_growth_bytes"], "met": r["memory_ok"]})
        out.append({"target": "P6 no call over the send bound", "value": r["longest_call_s"], "met": r["calls_ok"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds (a smoke run)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated subset, e.g. P1,P4")
    parser.add_argument(
        "--callgrind", action="store_true", help="also count P1's instructions per call under valgrind (minutes)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to write results.json and chart.png (default docs/perf, or build/perf-quick with --quick)",
    )
    args = parser.parse_args()
    only = {p.strip().upper() for p in args.only.split(",") if p.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    machine = {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": quick,
    }
    print(f"machine: {machine}", flush=True)
    results: dict[str, Any] = {}
    started = time.monotonic()

    def section(name: str, title: str) -> bool:
        if name not in only:
            return False
        print(f"\n{name} {title}  [{time.monotonic() - started:.0f} s]", flush=True)
        return True

    if section("P1", "producer: µs per logging call, best case and realistic service, median of rounds, interleaved"):
        results["P1"] = producer.run(*((5_000, 3) if quick else (20_000, 7)))
        print(producer.table(results["P1"]))
        if args.callgrind:
            print("instructions per call (valgrind callgrind; all threads of the producer process):", flush=True)
            results["P1"]["instructions"] = instructions.run()
            print(instructions.table(results["P1"]["instructions"]))
    if section("P2", "end to end: records/s, 1 producer -> (broker) -> 1 subscriber rehydrating LogRecords"):
        results["P2"] = endtoend.run(*((30_000, 1) if quick else (200_000, 5)))
        print(endtoend.table(results["P2"]))
    if section("P3", "broker forwarding vs raw zmq.proxy (records/s, median of alternating trials)"):
        rounds = 1 if quick else 5
        results["P3"] = forwarding.run(20_000 if quick else 200_000, rounds)
        print(_p3_table(results["P3"], rounds))
    if section("P4", "subscriber: records/s rehydrated and dispatched, median of rounds"):
        results["P4"] = subscriber.run(*((10_000, 3) if quick else (50_000, 7)))
        print(subscriber.table(results["P4"]))
    if section("P5", "bytes per typical record"):
        results["P5"] = size.run()
        print(size.table(results["P5"]))
    if section("P6", "producer with the broker down"):
        results["P6"] = outage.run(5.0 if quick else 60.0)
        print(outage.table(results["P6"]))
    if section("P7", "CurveZMQ cost (records/s, median of alternating trials)"):
        results["P7"] = curve.run(10_000 if quick else 100_000, 1 if quick else 5)
        print(_p7_table(results["P7"]))
    if section("P8", "sender thread vs the handler before it: burst cost, CPU per record, delivery delay at idle"):
        results["P8"] = sender.run(None, 20_000 if quick else 100_000, 1 if quick else 5)
        print(sender.table(results["P8"]))

    checked = targets(results)
    print(f"\ntargets  [{time.monotonic() - started:.0f} s]")
    for t in checked:
        value = t["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {'met   ' if t['met'] else 'MISSED'}  {t['target']}: {shown}")
    out = Path(args.out or ("build/perf-quick" if quick else "docs/perf"))
    out.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine, **results, "targets": checked}
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out / 'results.json'}")
    try:
        from bench import chart
    except ImportError as exc:  # matplotlib is the optional 'bench' extra
        print(f"no chart: {exc} (pip install '.[bench]')")
    else:
        chart.draw(document, out / "chart.png")
        print(f"wrote {out / 'chart.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
