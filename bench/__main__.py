"""``make bench`` / ``python -m bench``: run the benchmarks, print a table, write docs/perf/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import zmq

from bench import curve, forwarding


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds (a smoke run)")
    parser.add_argument("--out", default="docs/perf", help="where to write results.json")
    args = parser.parse_args()
    count, rounds = (20_000, 1) if args.quick else (200_000, 5)
    machine = {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    print(f"machine: {machine}")
    p3 = forwarding.run(count, rounds)
    print("\nP3 broker forwarding vs raw zmq.proxy (records/s, median of", rounds, "alternating trials)")
    print(f"{'path':<6} {'raw proxy':>12} {'broker':>12} {'ratio':>7}  lost(raw/broker)")
    for path, r in p3.items():
        print(
            f"{path:<6} {r['raw_median_rps']:>12,} {r['broker_median_rps']:>12,} {r['ratio']:>7}"
            f"  {r['lost']['raw']}/{r['lost']['broker']}"
        )
    p7 = curve.run(count // 2, rounds)
    print("\nP7 CurveZMQ cost (records/s, median of", rounds, "alternating trials)")
    print(f"{'path':<7} {'plaintext':>12} {'curve':>12} {'ratio':>7}  lost(plain/curve)")
    for path, r in p7.items():
        print(
            f"{path:<7} {r['plaintext_median_rps']:>12,} {r['curve_median_rps']:>12,} {r['ratio']:>7}"
            f"  {r['lost']['plaintext']}/{r['lost']['curve']}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"machine": machine, "P3": p3, "P7": p7}, indent=2) + "\n")
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
