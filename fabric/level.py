"""``logfabric level``: change a running service's logger levels through its brokers, for a while.

::

    logfabric level set checkout DEBUG --logger app.db --for 10m
    logfabric level list [checkout]
    logfabric level reset checkout

Each command goes to the control endpoint of every broker given (``--control``,
repeatable; ``dns+tcp://NAME:PORT`` means every address NAME resolves to, so
every replica), which passes a change to every process of the service
connected to it and answers with those that applied it. Remote text (host
names, logger names, who changed what) is escaped before it is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson
import zmq

from fabric import _control_wire as wire
from fabric import curve, discovery
from fabric._safe_format import escape

__all__ = ["build_parser", "main", "request"]

_DEFAULT_CONTROL = f"tcp://127.0.0.1:{wire.DEFAULT_PORT}"
#: Seconds to wait for a broker beyond the time it waits for producers.
_SLACK = 5.0
#: Largest answer taken from a broker (a ``list`` of many processes).
_MAX_ANSWER = 16 * 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    """The ``logfabric level`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    env = os.environ.get(wire.ENV, "")
    common.add_argument(
        "--control",
        action="append",
        metavar="EP",
        help="a broker's control endpoint (repeatable; dns+tcp://NAME:PORT reaches every broker NAME resolves to; "
        f"default ${wire.ENV} if it is an endpoint, else {_DEFAULT_CONTROL})",
    )
    common.add_argument("--curve-server-key", metavar="FILE", help="the broker's public key file (CurveZMQ)")
    common.add_argument(
        "--curve-client-key", metavar="FILE", help="your operator secret key file (CurveZMQ); see docs/security.md"
    )
    common.add_argument(
        "--wait",
        type=float,
        default=wire.DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long brokers wait for processes to confirm (default {wire.DEFAULT_WAIT:g}, at most "
        f"{wire.MAX_WAIT:g})",
    )
    parser = argparse.ArgumentParser(
        prog="logfabric level",
        description="Change logger levels in every process of a service, for a while; each change reverts by "
        "itself (see README, Runtime levels).",
    )
    parser.set_defaults(default_control=env if "://" in env else _DEFAULT_CONTROL)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    set_ = actions.add_parser("set", parents=[common], help="set a level in every process of SERVICE")
    set_.add_argument("service", metavar="SERVICE")
    set_.add_argument("level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR, CRITICAL or 0 to 50")
    set_.add_argument(
        "--logger", action="append", default=[], metavar="NAME", help="a logger to change (repeatable; default root)"
    )
    set_.add_argument(
        "--for",
        dest="duration",
        default="15m",
        metavar="DURATION",
        help="how long until it reverts by itself: 90s, 15m, 2h (default 15m, at most 24h)",
    )
    show = actions.add_parser("list", parents=[common], help="show the changes in force and the processes")
    show.add_argument("service", metavar="SERVICE", nargs="?")
    reset = actions.add_parser("reset", parents=[common], help="revert every change of SERVICE now")
    reset.add_argument("service", metavar="SERVICE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logfabric level``; return the exit code (0 done, 1 refused or not answered by all, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        doc = _request(args)
        keys = curve.client_keys(args.curve_server_key, args.curve_client_key)
        endpoints = _expand(args.control or [args.default_control])
    except (wire.Invalid, ValueError) as exc:
        print(f"logfabric level: {exc}", file=sys.stderr)
        return 2
    status = 0
    for endpoint in endpoints:
        answer = request(endpoint, doc, keys, timeout=float(doc.get("wait", 0.0)) + _SLACK)
        if len(endpoints) > 1:
            print(f"== broker {endpoint}")
        try:
            status = max(status, _show(answer, endpoint))
        except (KeyError, TypeError, ValueError) as exc:
            print(f"logfabric level: {endpoint} answered something unexpected ({escape(str(exc))})", file=sys.stderr)
            status = 1
    return status


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The request ``args`` ask for, checked here so a mistake needs no broker to be found."""
    if not 0 <= args.wait <= wire.MAX_WAIT:
        raise wire.Invalid("invalid", f"--wait must be from 0 to {wire.MAX_WAIT:g} seconds")
    doc: dict[str, Any] = {"v": wire.VERSION, "op": args.action, "service": args.service}
    if args.service is not None:
        wire.check_name(args.service, "the service")
    if args.action == "set":
        root = ("root", "")
        loggers = [("" if name in root else name) for name in args.logger]
        doc |= {"level": wire.parse_level(args.level), "loggers": list(wire.check_loggers(loggers))}
        doc["duration"] = wire.parse_duration(args.duration)
    if args.action != "list":
        doc["wait"] = args.wait
    return doc


def _expand(endpoints: list[str]) -> list[str]:
    """Every broker endpoint: a ``dns+tcp://`` one becomes one per address its name resolves to now."""
    out: list[str] = []
    for endpoint in endpoints:
        if endpoint.startswith(discovery.DNS_SCHEME):
            host, port = discovery._split(endpoint)
            try:
                addresses = discovery.resolve_all(host, port)
            except OSError as exc:
                raise ValueError(f"cannot resolve {endpoint!r}: {exc}") from None
            out += [discovery._tcp(address, port) for address in addresses]
        else:
            from fabric._sockets import check_endpoint

            out.append(check_endpoint(endpoint))
    return out


def request(endpoint: str, doc: dict[str, Any], keys: curve.CurveKeys | None, timeout: float) -> dict[str, Any]:
    """Send ``doc`` to the control endpoint ``endpoint``; return its answer (``{"ok": False, ...}`` if none)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, _MAX_ANSWER)
        watch: curve.HandshakeWatch | None = None
        if keys is not None:
            keys.apply(sock)
            watch = curve.HandshakeWatch(sock, keys, role="operator")
        sock.connect(endpoint)
        sock.send(orjson.dumps(doc))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if sock.poll(int(min(left, 0.2) * 1000) + 1):
                answer = orjson.loads(sock.recv())
                if isinstance(answer, dict):
                    return answer
                break
            if watch is not None:
                watch.check()
        if watch is not None and watch.refusals:
            return {"ok": False, "error": "handshake", "message": "the broker refused the CURVE handshake (see above)"}
        return {
            "ok": False,
            "error": "no_answer",
            "message": f"no answer within {timeout:g} s: is a broker running there with --control "
            "(and, with CurveZMQ, is your key in its operators allow-list)?",
        }
    finally:
        if watch is not None:
            watch.close()
        sock.close(linger=0)
        ctx.term()


def _show(answer: dict[str, Any], endpoint: str) -> int:
    """Print ``answer``; return its exit status."""
    if answer.get("ok") is not True:
        code, message = escape(str(answer.get("error"))), escape(str(answer.get("message")))
        print(f"logfabric level: {endpoint} refused ({code}): {message}", file=sys.stderr)
        return 1
    if answer.get("op") == "list":
        return _show_list(answer)
    who, service = escape(str(answer.get("by"))), escape(str(answer.get("service")))
    if answer.get("op") == "set":
        loggers = ", ".join(escape(n) or "root" for n in answer.get("loggers", []))
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(answer.get("until", 0))))
        print(
            f"change {answer.get('id')} by {who}: {service} {loggers} -> {wire.level_name(int(answer['level']))} "
            f"for {wire.duration_text(float(answer['duration']))}, until {until}"
        )
    else:
        print(f"change {answer.get('id')} by {who}: {service} back to its own levels")
    applied, failed, missing = (answer.get(k, []) for k in ("applied", "failed", "missing"))
    if not (applied or failed or missing):
        what = "it stays in force for processes that connect before it expires" if answer.get("op") == "set" else ""
        print(f"no process of {service} is connected to this broker now{'; ' + what if what else ''}")
        return 0
    for title, rows in (("applied by", applied), ("refused by", failed), ("did not answer", missing)):
        if rows:
            print(f"{title} {len(rows)} process(es):")
            for row in rows:
                error = f": {escape(str(row['error']))}" if "error" in row else ""
                print(f"  {_process(row)}{error}")
    return 1 if failed or missing else 0


def _show_list(answer: dict[str, Any]) -> int:
    services = answer.get("services", [])
    if not services:
        print("no level change in force, and no process reports one")
    for entry in services:
        print(f"{escape(str(entry.get('service')))}:")
        for change in entry.get("changes", []):
            until = time.strftime("%H:%M:%S", time.localtime(float(change.get("until", 0))))
            left = wire.duration_text(float(change.get("left", 0)))
            name, level = escape(str(change.get("logger") or "root")), wire.level_name(int(change.get("level", 0)))
            print(f"  {name} {level} until {until} ({left} left) by {escape(str(change.get('by')))}")
        for process in entry.get("processes", []):
            active = process.get("active") or []
            shown = ", ".join(
                f"{escape(str(a[0])) or 'root'}={wire.level_name(int(a[1]))} ({wire.duration_text(float(a[2]))} left)"
                for a in active[: wire.MAX_LOGGERS]
                if isinstance(a, list) and len(a) == 3
            )
            print(f"  process {_process(process)}: {shown or 'no change in force'}")
    if answer.get("truncated"):
        print("(more processes than shown: name a service to see its own)")
    return 0


def _process(row: dict[str, Any]) -> str:
    return f"{escape(str(row.get('host')))} pid {row.get('pid')} producer {escape(str(row.get('producer')))}"


if __name__ == "__main__":
    sys.exit(main())
