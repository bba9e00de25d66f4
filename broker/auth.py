"""CurveZMQ for the broker: its key pair, two allow-lists, the ZAP handler, and refused peers.

Every bound socket becomes a CURVE server with its own ZAP domain,
``logfabric.<role>``. The ingests' domains check client keys against the
producers' allow-list, the egress's, the pipeline's and the history
endpoint's against the subscribers' one, so a subscriber key cannot produce and a producer key
cannot subscribe. The control endpoint's domain takes producers' keys (to receive level
changes) and operators' keys (to send them); only an operator's may send one
(checked per message by :mod:`broker._control`).

Refusals are counted by socket and reason:

- ``unknown_key``: a CURVE client whose public key is not in that socket's
  allow-list (the ZAP handler answered 400; the handshake failed with
  HANDSHAKE_FAILED_AUTH);
- ``plaintext``: a peer without CURVE (a NULL or PLAIN mechanism;
  HANDSHAKE_FAILED_PROTOCOL, mechanism mismatch);
- ``bad_handshake``: a CURVE handshake that does not decrypt, usually a client
  holding the wrong server public key (HANDSHAKE_FAILED_PROTOCOL, cryptographic
  or malformed CURVE commands);
- ``aborted``: a peer that hung up during the handshake
  (HANDSHAKE_FAILED_NO_DETAIL). A client without CURVE sees the mismatch too,
  and when it hangs up first this is how its refusal shows; a TCP probe that
  connects and closes counts here as well.

Each is logged on ``logfabric.broker``, at most once every 10 s per socket and
reason, with the number since the last message.

The allow-lists are directories of ``*.key`` files (``logfabric keys
generate``). They are read again when a directory changes (looked at on the
next handshake: at once for an unknown key, at most once a second otherwise),
so keys can be added and removed without a restart. Removing a key refuses new
connections with it; connections already established stay up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from broker._errors import ConfigError
from broker._options import env_var, flag_of
from broker._roles import EGRESS, SERVED, SOCKETS, socket_of
from broker._subscriptions import PenaltyBox
from broker.config import BrokerConfig
from fabric import curve

__all__ = ["REASONS", "AllowList", "BrokerAuth", "check_key_mode", "monitor_hook", "upstream_keys"]

_log = logging.getLogger("logfabric.broker")

#: Why a peer was refused.
REASONS = ("unknown_key", "plaintext", "bad_handshake", "aborted")

_LOG_EVERY = 10.0
_RECHECK_EVERY = 1.0
_PENALIZED = 300  # the ZAP status, and monitor event value, of a penalized subscriber
_CRYPTO_ERRORS = frozenset(
    int(getattr(zmq, name))
    for name in (
        "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC",
        "PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE",
        "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO",
        "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE",
        "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_WELCOME",
        "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_READY",
        "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_MESSAGE",
    )
)


_EGRESS_DOMAIN = EGRESS.domain.encode()
_BOUND_ROLES = frozenset(s.role for s in SERVED)
#: The sockets that connect to other brokers (as their subscribers).
_LINKS = frozenset(s.role for s in SOCKETS if s.peers == "brokers")


class AllowList:
    """The public keys in one directory of ``*.key`` files, re-read when the directory changes."""

    def __init__(self, directory: str, label: str) -> None:
        self.directory = Path(directory)
        self.label = label
        if not self.directory.is_dir():
            raise ConfigError(
                f"the {label} allow-list {directory!r} is not a directory; create it and put the "
                f"{label}' public key files (NAME.key, from 'logfabric keys generate') in it"
            )
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] = ()
        self._checked = 0.0
        self.keys: frozenset[bytes] = frozenset()
        self.reload(strict=True)

    def _signature(self) -> tuple[int, ...]:
        # A Kubernetes Secret update swaps a symlink inside the directory, which
        # changes the directory's mtime; editing a key file in place changes its own.
        stamps = [self.directory.stat().st_mtime_ns]
        for path in sorted(self.directory.glob("*.key")):
            with contextlib.suppress(OSError):
                stamps.append(path.stat().st_mtime_ns)
        return tuple(stamps)

    def reload(self, strict: bool = False) -> bool:
        """Read the directory again; return whether the keys changed.

        An unreadable directory or key file raises :class:`ConfigError` when
        ``strict`` (at start); later it is logged and the last keys are kept.
        """
        with self._lock:
            self._checked = time.monotonic()
            try:
                signature = self._signature()
                keys = frozenset(zmq.auth.load_certificates(self.directory))
            except (OSError, ValueError) as exc:
                if strict:
                    raise ConfigError(
                        f"cannot read the {self.label} allow-list {str(self.directory)!r}: {exc}; "
                        "it should hold only public key files (NAME.key) made by 'logfabric keys generate'"
                    ) from None
                _log.error(
                    "cannot read the %s allow-list %s (keeping the last keys): %s", self.label, self.directory, exc
                )
                return False
            first = not self._stamp
            self._stamp = signature
            changed = keys != self.keys
            if changed or first:
                self.keys = keys
                _log.info("%s allow-list %s: %d key(s)", self.label, self.directory, len(keys))
                if not keys:
                    _log.warning(
                        "the %s allow-list %s holds no *.key file: all are refused", self.label, self.directory
                    )
            return changed

    def allows(self, z85_key: bytes) -> bool:
        """Whether ``z85_key`` is listed.

        A miss always looks at the directory again (a key added a moment ago is
        found); a hit does so at most once a second (a removed key stops
        working within a second, for new connections).
        """
        if z85_key in self.keys and time.monotonic() - self._checked < _RECHECK_EVERY:
            return True
        try:
            stale = self._signature() != self._stamp
        except OSError:
            stale = True
        if stale:
            self.reload()
        else:
            self._checked = time.monotonic()
        return z85_key in self.keys


class _Provider:
    """A pyzmq credentials provider for one ZAP domain (one bound socket)."""

    def __init__(self, auth: BrokerAuth, role: str, *allow: AllowList) -> None:
        self.auth = auth
        self.role = role
        self.allow = allow

    def callback(self, domain: str, key: bytes) -> bool:
        ok = any(allow.allows(key) for allow in self.allow)
        if not ok:
            self.auth.note_unknown_key(self.role, key)
        return ok


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler thread: remembers each request's peer address, refuses penalized subscribers.

    A new egress connection from an address in ``box`` is refused with status
    300 (a temporary error: the peer retries later), before any mechanism is
    looked at.
    """

    address = ""
    box: PenaltyBox | None = None

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        box = self.box
        if box is not None and len(msg) > 3 and msg[2] == _EGRESS_DOMAIN and box.refuses(self.address):
            reply = [b"1.0", msg[1], b"300", b"penalized: over the subscription budget", b"", b""]
            self.zap_socket.send_multipart(reply)
            return
        await super().handle_zap_message(msg)


class BrokerAuth:
    """The broker's CURVE side: load keys (clear errors), run ZAP, count and log refusals."""

    def __init__(self, config: BrokerConfig) -> None:
        assert config.curve_secret_key and config.curve_producers and config.curve_subscribers
        what = "the broker's secret key"
        try:
            self.public, self.secret = curve.load_key_pair(config.curve_secret_key, what, allow_open=True)
        except curve.CurveError as exc:
            raise ConfigError(str(exc)) from None
        check_key_mode(config.curve_secret_key, what, "curve_secret_key", config.allow_open_secret_key)
        self.producers = AllowList(config.curve_producers, "producers")
        self.subscribers = AllowList(config.curve_subscribers, "subscribers")
        self.operators = AllowList(config.curve_operators, "operators") if config.curve_operators else None
        self.refused: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._last_log: dict[tuple[str, str], float] = {}
        self._unlogged: Counter[tuple[str, str]] = Counter()
        self._authenticator: _Authenticator | None = None

    def start(self, ctx: zmq.Context[Any], box: PenaltyBox) -> None:
        """Start the ZAP handler in ``ctx`` (before any CURVE socket binds); ``box`` holds penalized subscribers."""
        auth = _Authenticator(ctx, log=logging.getLogger("logfabric.broker.zap"))
        auth.box = box
        auth.start()
        allow: dict[str, tuple[AllowList, ...]] = {"producers": (self.producers,), "subscribers": (self.subscribers,)}
        if self.operators is not None:  # the control endpoint: producers listen, operators command
            allow["operators"] = (self.producers, self.operators)
        for sock in SERVED:
            if sock.peers in allow:
                auth.configure_curve_callback(sock.domain, _Provider(self, sock.role, *allow[sock.peers]))
        self._authenticator = auth

    def stop(self) -> None:
        """Stop the ZAP handler (before the context is destroyed)."""
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    def serve(self, role: str, sock: zmq.Socket[bytes]) -> None:
        """Make bound socket ``role`` a CURVE server checked against its allow-list (before binding)."""
        curve.make_server(sock, self.public, self.secret, socket_of(role).domain)

    def refusals(self) -> dict[tuple[str, str], int]:
        """Refused peers by (socket, reason)."""
        with self._lock:
            return dict(self.refused)

    # ------------------------------------------------------------------ refusals

    def note_unknown_key(self, role: str, key: bytes) -> None:
        """Log (rate-limited) a key the ZAP handler refused; the monitor event counts it."""
        address = self._authenticator.address if self._authenticator is not None else ""
        self._log(role, "unknown_key", f"CURVE key {key.decode('ascii', 'replace')} from {address or '?'}")

    def on_monitor_event(self, role: str, event: int, value: int) -> None:
        """Count a handshake refused on bound socket ``role`` (a ConnectionMonitor hook)."""
        if role not in _BOUND_ROLES:
            return
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and value == _PENALIZED:
            return  # counted by the penalty box
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reason = "unknown_key"  # logged with its key by the ZAP callback
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            reason = "plaintext"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value in _CRYPTO_ERRORS:
            reason = "bad_handshake"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            reason = "aborted"
        else:
            return
        with self._lock:
            self.refused[(role, reason)] += 1
        if reason == "plaintext":
            self._log(role, reason, "a peer without CURVE")
        elif reason == "bad_handshake":
            self._log(role, reason, "a CURVE handshake that did not decrypt (wrong server public key?)")
        elif reason == "aborted":
            self._log(role, reason, "a peer that hung up during the handshake (a client without CURVE?)")

    def _log(self, role: str, reason: str, what: str) -> None:
        key = (role, reason)
        now = time.monotonic()
        with self._lock:
            last = self._last_log.get(key)
            if last is not None and now - last < _LOG_EVERY:
                self._unlogged[key] += 1
                return
            self._last_log[key] = now
            skipped = self._unlogged.pop(key, 0)
        extra = f" ({skipped} more since the last message)" if skipped else ""
        _log.warning("refused %s on %s (%s)%s", what, role, reason, extra)


class UpstreamWatch:
    """Log (rate-limited) why an upstream broker refused this broker's CURVE handshake."""

    def __init__(self, keys: curve.CurveKeys) -> None:
        self.keys = keys
        self._last = 0.0
        self._unlogged = 0

    def on_monitor_event(self, role: str, event: int, value: int) -> None:
        """A ConnectionMonitor hook for the ``upstream`` socket."""
        if role not in _LINKS:
            return
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and value == _PENALIZED:
            why = (
                "refuses new connections from this broker for a while: it dropped one whose subscriptions "
                "went over its subscription_budget (raise it there to cover this broker's subscribers)"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = (
                f"refused this broker's CURVE key {self.keys.public.decode()}: "
                "add its public key file to the upstream's subscribers allow-list, then restart this broker"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            why = "does not use CURVE: drop curve_client_key and curve_upstream_key, or turn CURVE on upstream"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value in _CRYPTO_ERRORS:
            why = "failed the CURVE handshake: is curve_upstream_key that broker's public key?"
        else:
            return
        now = time.monotonic()
        if self._last and now - self._last < _LOG_EVERY:
            self._unlogged += 1
            return
        extra = f" ({self._unlogged} more since the last message)" if self._unlogged else ""
        self._last, self._unlogged = now, 0
        _log.warning("the upstream broker %s%s", why, extra)


def monitor_hook(auth: BrokerAuth | None, upstream: curve.CurveKeys | None) -> Callable[[str, int, int], None] | None:
    """The ConnectionMonitor hook for what CurveZMQ is on: bound sockets, the upstream link, both or neither."""
    hooks = [h.on_monitor_event for h in (auth, UpstreamWatch(upstream) if upstream else None) if h is not None]
    if not hooks:
        return None

    def hook(role: str, event: int, value: int) -> None:
        for h in hooks:
            h(role, event, value)

    return hook


def upstream_keys(config: BrokerConfig) -> curve.CurveKeys | None:
    """The client keys for ``--upstream`` connections, or None for plaintext."""
    if config.curve_client_key is None or config.curve_upstream_key is None:
        return None
    try:
        keys = curve.CurveKeys.load(config.curve_upstream_key, config.curve_client_key, allow_open=True)
    except curve.CurveError as exc:
        raise ConfigError(f"upstream: {exc}") from None
    what = "upstream: the client key"
    check_key_mode(config.curve_client_key, what, "curve_client_key", config.allow_open_secret_key)
    return keys


def check_key_mode(path: str, what: str, setting: str, allow_open: bool) -> None:
    """Refuse a secret key file that group or others may read or write, saying how to fix it.

    Whoever can read the broker's secret key can pass for the broker; whoever
    can write it can swap in a key of their own. ``allow_open`` (the
    ``allow_open_secret_key`` setting) accepts such a file anyway, for a key
    mounted by a system that cannot set its mode.
    """
    try:
        # env={}: only the broker's own setting overrides, not the clients' variable
        curve.check_secret_key_mode(path, allow_open=allow_open, what=what, env={})
    except curve.CurveError as exc:
        try:
            mode = stat.S_IMODE(os.stat(Path(path).expanduser()).st_mode)
        except OSError:
            raise ConfigError(f"{setting}: {exc}") from None
        raise ConfigError(
            f"{what} {path!r} ({setting}) has mode {mode:04o}: group or others may read or write it, and "
            f"whoever can read it can pass for this broker. Run 'chmod 600 {shlex.quote(path)}'; to use it "
            f"anyway, pass {flag_of('allow_open_secret_key')} or set {env_var('allow_open_secret_key')}=1"
        ) from None
