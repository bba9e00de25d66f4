"""CurveZMQ keys: generate them, load them with clear errors, put them on sockets.

The broker is the CURVE *server*: it holds a secret key, and its public key is
what every client needs. Producers and subscribers are CURVE *clients*: each
has its own key pair, whose public half is listed in the broker's allow-list.

Key files are those of ``zmq.auth.create_certificates`` (and ``logfabric keys
generate``): ``NAME.key`` holds the public key (give it away), ``NAME.key_secret``
holds both keys (keep it private).

Clients take two paths, as options or from the environment:

- ``curve_server_key`` / ``$LOGFABRIC_CURVE_SERVER_KEY``: the broker's public
  key file (``broker.key``);
- ``curve_client_key`` / ``$LOGFABRIC_CURVE_CLIENT_KEY``: this client's secret
  key file (``app.key_secret``).

A secret key file that group or others may read or write is refused (see
:func:`check_secret_key_mode`) unless ``curve_allow_open_key=True`` or
``$LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1`` says to accept it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from fabric._errors import ConfigError

__all__ = [
    "ENV_ALLOW_OPEN_KEY",
    "ENV_CLIENT_KEY",
    "ENV_SERVER_KEY",
    "CurveError",
    "CurveKeys",
    "HandshakeWatch",
    "check_secret_key_mode",
    "client_keys",
    "generate",
    "load_key_pair",
    "load_public_key",
    "make_server",
]

#: The environment variable naming the broker's public key file.
ENV_SERVER_KEY = "LOGFABRIC_CURVE_SERVER_KEY"
#: The environment variable naming this client's secret key file.
ENV_CLIENT_KEY = "LOGFABRIC_CURVE_CLIENT_KEY"
#: Set to ``1`` to accept secret key files that group or others may read or write.
ENV_ALLOW_OPEN_KEY = "LOGFABRIC_CURVE_ALLOW_OPEN_KEY"

_OPEN_BITS = 0o066  # read or write for group or others

_Z85_KEY = re.compile(rb"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class CurveError(ConfigError):
    """A key or key file that cannot be used; the message says what to do.

    A :class:`fabric.ConfigError`: ``except fabric.ConfigError`` catches it.
    """


@dataclass(frozen=True, repr=False)
class CurveKeys:
    """What a CURVE client needs: the server's public key and its own key pair (z85, 40 bytes each)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(
        cls,
        server_key: str | os.PathLike[str],
        client_key: str | os.PathLike[str],
        *,
        allow_open: bool = False,
    ) -> CurveKeys:
        """Read the server's public key file and this client's secret key file.

        ``allow_open`` accepts a secret key file that group or others may read
        (see :func:`check_secret_key_mode`).
        """
        server = load_public_key(server_key, "the server key")
        public, secret = load_key_pair(client_key, "the client key", allow_open=allow_open)
        return cls(server, public, secret)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE client of the server (before it connects)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)

    def __repr__(self) -> str:  # never show the secret
        return f"CurveKeys(server={self.server_public.decode()}, client={self.public.decode()})"


def _read(path: str | os.PathLike[str], what: str) -> tuple[bytes, bytes | None]:
    shown = os.fspath(path)
    if not shown:
        raise CurveError(f"{what}: an empty path was given; name a key file made by 'logfabric keys generate'")
    p = Path(shown).expanduser()
    if p.is_dir():
        raise CurveError(f"{what} {shown!r} is a directory; name the key file itself (e.g. {shown}/broker.key)")
    if not p.exists():
        raise CurveError(f"{what} {shown!r} does not exist; create a key pair with 'logfabric keys generate NAME'")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except OSError as exc:
        raise CurveError(f"{what} {shown!r} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise CurveError(
            f"{what} {shown!r} is not a CURVE key file (no 'public-key = \"...\"' line); "
            "use a file made by 'logfabric keys generate' or zmq.auth.create_certificates"
        ) from None
    for key, kind in ((public, "public"), (secret, "secret")):
        if key is not None and not _Z85_KEY.fullmatch(key):
            raise CurveError(f"{what} {shown!r} holds a malformed {kind} key: expected 40 z85 characters")
    return public, secret


def load_public_key(path: str | os.PathLike[str], what: str = "the public key") -> bytes:
    """The public key in a ``NAME.key`` file.

    A file that also holds a secret key is refused: a peer's secret key should
    never be copied around, and the public file is all that is needed.
    """
    public, secret = _read(path, what)
    if secret is not None:
        shown = os.fspath(path)
        hint = shown[: -len("_secret")] if shown.endswith(".key_secret") else "NAME.key"
        raise CurveError(
            f"{what} {shown!r} holds a secret key; pass the public file ({hint}) instead "
            "and keep the secret one private"
        )
    return public


def load_key_pair(
    path: str | os.PathLike[str], what: str = "the key pair", *, allow_open: bool = False
) -> tuple[bytes, bytes]:
    """The (public, secret) keys in a ``NAME.key_secret`` file.

    A file that group or others may read or write is refused unless
    ``allow_open`` (or ``$LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1``) accepts it; see
    :func:`check_secret_key_mode`.
    """
    public, secret = _read(path, what)
    if secret is None:
        shown = os.fspath(path)
        hint = shown + "_secret" if shown.endswith(".key") else "NAME.key_secret"
        raise CurveError(f"{what} {shown!r} holds only a public key; pass the secret key file ({hint})")
    check_secret_key_mode(path, allow_open=allow_open, what=what)
    return public, secret


def check_secret_key_mode(
    path: str | os.PathLike[str],
    *,
    allow_open: bool = False,
    what: str = "the secret key",
    env: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`CurveError` if group or others may read or write the secret key file ``path``.

    Whoever can read a secret key can pass for its owner, and whoever can write
    it can swap in a key of their own. ``allow_open=True``, or
    ``$LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1`` in ``env`` (default ``os.environ``),
    accepts such a file anyway: for a key mounted by a system that cannot set
    its mode. The file's own mode counts (a symbolic link is followed). On
    Windows, whose files have no such mode bits, nothing is checked.
    """
    if allow_open or os.name == "nt" or _env_allows_open(env):
        return
    shown = os.fspath(path)
    try:
        mode = os.stat(Path(shown).expanduser()).st_mode
    except OSError as exc:
        raise CurveError(f"{what} {shown!r} cannot be checked: {exc.strerror or exc}") from None
    if mode & _OPEN_BITS:
        raise CurveError(
            f"{what} {shown!r} has mode {mode & 0o777:04o}: group or others may read or write it, and anyone "
            f"who can read it can pass for its owner. Run 'chmod 600 {shlex.quote(shown)}' (and check who owns "
            f"it); to use it anyway, pass curve_allow_open_key=True or set {ENV_ALLOW_OPEN_KEY}=1"
        )


def _env_allows_open(env: Mapping[str, str] | None) -> bool:
    return ((os.environ if env is None else env).get(ENV_ALLOW_OPEN_KEY) or "").strip() == "1"


def client_keys(
    server_key: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    allow_open_key: bool = False,
) -> CurveKeys | None:
    """The CURVE keys a client should use, or None for plaintext.

    Both paths given: those. Neither: ``$LOGFABRIC_CURVE_SERVER_KEY`` and
    ``$LOGFABRIC_CURVE_CLIENT_KEY`` (both or neither must be set). One without
    the other is an error, never a silent fallback to plaintext. A secret key
    file that group or others may read or write is refused unless
    ``allow_open_key`` or ``$LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1`` accepts it.
    """
    allow_open_key = allow_open_key or _env_allows_open(env)
    if server_key is None and client_key is None:
        environ = os.environ if env is None else env
        server_env, client_env = environ.get(ENV_SERVER_KEY) or None, environ.get(ENV_CLIENT_KEY) or None
        if server_env is None and client_env is None:
            return None
        if server_env is None or client_env is None:
            have, missing = (ENV_CLIENT_KEY, ENV_SERVER_KEY) if server_env is None else (ENV_SERVER_KEY, ENV_CLIENT_KEY)
            raise CurveError(f"{have} is set but {missing} is not: CURVE needs both (or unset both for plaintext)")
        try:
            return CurveKeys.load(server_env, client_env, allow_open=allow_open_key)
        except CurveError as exc:
            raise CurveError(f"{exc} (from {ENV_SERVER_KEY} / {ENV_CLIENT_KEY})") from None
    if server_key is None or client_key is None:
        missing = "curve_server_key" if server_key is None else "curve_client_key"
        raise CurveError(
            f"{missing} is missing: CURVE needs both the server's public key file and this client's secret key file"
        )
    return CurveKeys.load(server_key, client_key, allow_open=allow_open_key)


class HandshakeWatch:
    """Warn on logger ``logfabric.curve`` when a broker refuses this client's CURVE handshake.

    A refused client otherwise sees nothing at all: no error, no records.
    Created on a socket before it connects (so no event is missed); call
    :meth:`check` now and then from the socket's thread, and :meth:`close`
    before the socket closes. Each kind of warning repeats at most once every 10 s.
    """

    _EVENTS = (
        zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )

    def __init__(self, sock: zmq.Socket[bytes], keys: CurveKeys, role: str = "subscriber") -> None:
        self._sock = sock
        self._monitor: zmq.Socket[bytes] | None = sock.get_monitor_socket(self._EVENTS)
        self.keys = keys
        self.role = role
        self.refusals = 0
        self._last: dict[str, float] = {}

    def check(self) -> None:
        """Read pending monitor events (never blocks) and warn about refusals."""
        from zmq.utils.monitor import recv_monitor_message

        monitor = self._monitor
        while monitor is not None:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            endpoint = event["endpoint"].decode("utf-8", "replace")
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = (
                    f"refused this {self.role}'s CURVE key {self.keys.public.decode()}: "
                    f"ask its operator to add your public key file to the {self.role}s allow-list, then reconnect"
                )
            elif (
                event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                and event["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
            ):
                why = f"does not use CURVE: drop the keys (and unset {ENV_SERVER_KEY} / {ENV_CLIENT_KEY})"
            else:  # a broker that cannot decrypt the handshake hangs up without a reason
                why = (
                    "hung up during the CURVE handshake: is the server key file that broker's public key, "
                    "and does it use CURVE?"
                )
            self.refusals += 1
            now = time.monotonic()
            last = self._last.get(why)
            if last is None or now - last >= 10.0:
                self._last[why] = now
                logging.getLogger("logfabric.curve").warning("the broker at %s %s", endpoint, why)

    def close(self) -> None:
        """Stop watching and close the monitor socket (before the socket and its context)."""
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):  # the socket may already be closed
                self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None


def check_not_bound(keys: CurveKeys | None, bind: bool) -> None:
    """Refuse CURVE client keys on a socket that binds (it would need to be the server)."""
    if keys is not None and bind:
        raise CurveError(
            "CURVE keys are for connecting to a CURVE server (the broker); a socket that binds would have "
            "to be the server, which is not supported: connect to a broker, or drop the keys "
            f"(and unset {ENV_SERVER_KEY} / {ENV_CLIENT_KEY})"
        )


def make_server(sock: zmq.Socket[bytes], public: bytes, secret: bytes, domain: str) -> None:
    """Make ``sock`` a CURVE server whose handshakes the ZAP handler checks under ``domain`` (before binding)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())


def generate(name: str, directory: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """Create ``NAME.key`` (public, mode 0644) and ``NAME.key_secret`` (mode 0600) in ``directory``.

    Never overwrites: an existing file of either name raises :class:`CurveError`.
    The directory is created (mode 0700) if missing. Returns (public, secret) paths.
    """
    if not _NAME.fullmatch(name):
        raise CurveError(
            f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (no '/'), starting with a letter or digit"
        )
    if not zmq.has("curve"):  # pragma: no cover - pyzmq wheels always have it
        raise CurveError("this libzmq was built without CURVE support")
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_path, secret_path = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists() or path.is_symlink():
            raise CurveError(
                f"{path} already exists: refusing to overwrite a key; pick another name or remove it first"
            )
    # Let pyzmq write the files into a private scratch directory, then copy them
    # into place with O_EXCL (never overwrites) and the final modes from the start.
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    try:
        tmp_public, tmp_secret = (Path(p) for p in zmq.auth.create_certificates(scratch, name))
        _place(tmp_secret.read_bytes(), secret_path, 0o600)
        try:
            _place(tmp_public.read_bytes(), public_path, 0o644)
        except CurveError:
            secret_path.unlink()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return public_path, secret_path


def _place(data: bytes, path: Path, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CurveError(f"{path} already exists: refusing to overwrite a key") from None
    os.fchmod(fd, mode)  # exactly this mode, whatever the umask
    with os.fdopen(fd, "wb") as f:
        f.write(data)
