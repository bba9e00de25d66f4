"""Broker settings: defaults, then a config file, then LOGFABRIC_BROKER_* variables, then flags."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from broker._errors import ConfigError
from broker._options import ENV_PREFIX, coerce, env_var, from_env, option, service_defaults
from broker._roles import SOCKETS, socket_of
from broker._segment import MAX_RECORD
from fabric._sockets import DEFAULT_MAX_MESSAGE, check_endpoint
from fabric.topic import MAX_TOPIC

__all__ = [
    "CONFIG_VAR",
    "ENV_PREFIX",
    "MAX_TOPIC",
    "SERVICE_HTTP",
    "BrokerConfig",
    "ConfigError",
    "parse_http",
    "subscription_frame_limit",
]

#: The variable naming a config file (the ``--config`` flag); not a setting.
CONFIG_VAR = env_var("config")
#: Where ``logfabric broker`` serves HTTP unless told otherwise (an embedded broker serves none).
SERVICE_HTTP = "0.0.0.0:9102"

#: What a ZMTP 3.1 SUBSCRIBE command adds to its prefix on the wire (``\x09SUBSCRIBE``);
#: an old-style subscription message adds one byte.
SUBSCRIBE_COMMAND_BYTES = 10
#: What CurveZMQ adds to every frame on the wire (MESSAGE command name, nonce, MAC, flags).
CURVE_FRAME_BYTES = 33
#: The default :attr:`BrokerConfig.subscription_budget`: libzmq spends about 200 times
#: this on the tries of the sockets subscriptions pass through.
DEFAULT_SUBSCRIPTION_BUDGET = 256 * 1024
#: The defaults of :attr:`BrokerConfig.max_connections` and :attr:`BrokerConfig.max_connections_per_ip`.
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_MAX_CONNECTIONS_PER_IP = 1_000


def subscription_frame_limit(curve: bool) -> int:
    """The ZMQ_MAXMSGSIZE of a bound socket whose peers only subscribe or only receive.

    A subscription to a topic prefix of :data:`MAX_TOPIC` bytes fits as a
    SUBSCRIBE command, with or without CURVE; the longest prefix any socket
    then accepts is ``MAX_TOPIC + 9`` bytes (as an old-style message), and that
    is what this broker may forward to an upstream broker's egress, where it
    fits again whichever mechanism that link uses. libzmq drops the connection
    of a peer that sends a larger frame (libzmq 4.3.5 crashes on subscriptions
    of about 115 KB otherwise).
    """
    return MAX_TOPIC + SUBSCRIBE_COMMAND_BYTES + (CURVE_FRAME_BYTES if curve else 0)


def _socket(role: str, default: Any = MISSING) -> Any:
    """A field for one of the broker's sockets, as its row in :data:`broker._roles.SOCKETS` says."""
    sock = socket_of(role)
    return field(default=sock.default if default is MISSING else default, metadata=option(sock.help, "EP"))


_CURVE = "CurveZMQ (docs/security.md)"
_STORE = "record store (docs/broker.md#record-store)"
#: The defaults of :attr:`BrokerConfig.retention_bytes` and :attr:`BrokerConfig.retention_age`.
DEFAULT_RETENTION_BYTES = 1024**3
DEFAULT_RETENTION_AGE = 7 * 86400.0
#: The smallest :attr:`BrokerConfig.retention_bytes` (a store smaller than a few largest messages is no store).
MIN_RETENTION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BrokerConfig:
    """Everything the broker needs to run. Every field has a flag and a variable.

    ``LOGFABRIC_BROKER_PUB_INGEST`` sets ``pub_ingest`` and so on; ``upstream``
    takes a comma-separated list in the environment. HTTP is off unless
    ``http`` is set; ``logfabric broker`` (:meth:`load`) serves it on
    :data:`SERVICE_HTTP` unless told otherwise.
    """

    pub_ingest: str = _socket("pub_ingest")
    """XSUB endpoint where PUB producers connect."""
    push_ingest: str = _socket("push_ingest")
    """PULL endpoint where PUSH producers connect."""
    egress: str = _socket("egress")
    """XPUB endpoint where subscribers connect."""
    pipeline: str | None = _socket("pipeline")
    """Optional PUSH endpoint that load-balances every record over consumers."""
    http: str | None = field(
        default=None,
        metadata=option(
            "metrics and health endpoints; 'off' disables (default {default})", "HOST:PORT", service=SERVICE_HTTP
        ),
    )
    """HOST:PORT for /metrics, /healthz and /readyz; None (the default) turns HTTP off."""
    drain_timeout: float = field(default=10.0, metadata=option("longest SIGTERM drain (default {default})", "SECONDS"))
    """Seconds a SIGTERM drain may take before the broker exits anyway."""
    upstream: tuple[str, ...] = _socket("upstream", ())
    """Egress endpoints of other brokers to subscribe to (federation)."""
    hwm: int = field(
        default=100_000, metadata=option("high-water mark of every socket, in messages (default {default})")
    )
    """High-water mark of every broker socket, in messages."""
    max_message: int = field(
        default=DEFAULT_MAX_MESSAGE, metadata=option("largest message accepted (default {default})", "BYTES")
    )
    """Largest message accepted at an ingest (ZMQ_MAXMSGSIZE), in bytes."""
    subscription_budget: int = field(
        default=DEFAULT_SUBSCRIPTION_BUDGET,
        metadata=option(
            "bytes of distinct subscription prefixes held for subscribers; past it the connection that sent "
            "the most is dropped (default {default})",
            "BYTES",
        ),
    )
    """Bytes of distinct subscription prefixes held for subscribers; past it the top sender is dropped."""
    max_connections: int = field(
        default=DEFAULT_MAX_CONNECTIONS,
        metadata=option(
            "connections each bound socket holds at most (default {default}; "
            "fewer if the descriptor limit leaves less room)",
            "N",
        ),
    )
    """Connections each bound socket holds at most (fewer if the descriptor limit leaves less room)."""
    max_connections_per_ip: int = field(
        default=DEFAULT_MAX_CONNECTIONS_PER_IP,
        metadata=option("connections each bound socket holds at most from one IP address (default {default})", "N"),
    )
    """Connections each bound socket holds at most from one IP address."""
    handshake_timeout: float = field(
        default=5.0,
        metadata=option(
            "a peer that has not finished its ZMTP handshake by then is dropped (default {default})", "SECONDS"
        ),
    )
    """Seconds a peer has to finish its ZMTP handshake (ZMQ_HANDSHAKE_IVL) before it is dropped."""
    curve_secret_key: str | None = field(
        default=None,
        metadata=option("the broker's secret key file; turns CURVE on (default off)", "FILE", group=_CURVE),
    )
    """The broker's CURVE secret key file (NAME.key_secret); turns CurveZMQ on for every bound socket."""
    curve_producers: str | None = field(
        default=None,
        metadata=option("public keys (*.key) allowed to produce at the ingests", "DIR", group=_CURVE),
    )
    """Directory of producer public keys (*.key) allowed at the ingests."""
    curve_subscribers: str | None = field(
        default=None,
        metadata=option("public keys (*.key) allowed at the egress and the pipeline", "DIR", group=_CURVE),
    )
    """Directory of subscriber public keys (*.key) allowed at the egress and the pipeline."""
    curve_operators: str | None = field(
        default=None,
        metadata=option(
            "public keys (*.key) allowed to change levels at --control (operators; default none)", "DIR", group=_CURVE
        ),
    )
    """Directory of operator public keys (*.key) allowed to send level changes to the control endpoint."""
    curve_client_key: str | None = field(
        default=None, metadata=option("this broker's secret key file for --upstream", "FILE", group=_CURVE)
    )
    """This broker's CURVE secret key file for connecting to ``upstream`` brokers."""
    curve_upstream_key: str | None = field(
        default=None, metadata=option("the upstream brokers' public key file", "FILE", group=_CURVE)
    )
    """The upstream brokers' public key file (NAME.key)."""
    store: str | None = field(
        default=None,
        metadata=option("keep every record received in a store in this directory (default off)", "DIR", group=_STORE),
    )
    """Directory of the record store; None (the default) keeps no records."""
    history: str | None = _socket("history")
    """Optional ROUTER endpoint answering history queries over the store (conventionally ``tcp://*:5559``)."""
    control: str | None = _socket("control")
    """Optional ROUTER endpoint for runtime level changes (conventionally ``tcp://*:5560``); see broker._control."""
    control_trust_network: bool = field(
        default=False,
        metadata=option(
            "without CurveZMQ, accept level changes at --control from anyone who can reach it (refused by default)"
        ),
    )
    """Accept level changes without CurveZMQ: whoever reaches the control endpoint may change levels."""
    retention_bytes: int = field(
        default=DEFAULT_RETENTION_BYTES,
        metadata=option(
            "the store's size at most; the oldest records go first (default {default})", "BYTES", group=_STORE
        ),
    )
    """Bytes the store keeps at most (segment files and their indexes); the oldest go first."""
    retention_age: float = field(
        default=DEFAULT_RETENTION_AGE,
        metadata=option("records older than this leave the store (default {default}: 7 days)", "SECONDS", group=_STORE),
    )
    """Seconds a record stays in the store at most."""
    allow_open_secret_key: bool = field(
        default=False,
        metadata=option(
            "accept secret key files that group or others may read or write (refused by default)", group=_CURVE
        ),
    )
    """Accept secret key files that group or others may read or write (refused otherwise)."""

    def __post_init__(self) -> None:
        for sock in SOCKETS:
            value = getattr(self, sock.field)
            for endpoint in value if isinstance(value, tuple) else () if value is None else (value,):
                _endpoint(sock.field, endpoint)
        if self.http is not None:
            parse_http(self.http)
        if self.drain_timeout < 0:
            raise ConfigError(f"drain_timeout must be >= 0 seconds, got {self.drain_timeout}")
        if self.hwm < 0:
            raise ConfigError(f"hwm must be >= 0, got {self.hwm}")
        if self.subscription_budget < MAX_TOPIC:
            raise ConfigError(
                f"subscription_budget must be at least {MAX_TOPIC} bytes (one longest subscription), "
                f"got {self.subscription_budget}"
            )
        for name in ("max_connections", "max_connections_per_ip"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.1 <= self.handshake_timeout <= 3600:
            raise ConfigError(f"handshake_timeout must be between 0.1 and 3600 seconds, got {self.handshake_timeout}")
        if not isinstance(self.allow_open_secret_key, bool):
            raise ConfigError(f"allow_open_secret_key must be True or False, got {self.allow_open_secret_key!r}")
        if self.store is not None and (not isinstance(self.store, str) or not self.store.strip()):
            raise ConfigError(f"store must be a directory path, got {self.store!r}")
        if self.retention_bytes < MIN_RETENTION_BYTES:
            raise ConfigError(
                f"retention_bytes must be at least {MIN_RETENTION_BYTES} bytes, got {self.retention_bytes}"
            )
        if not 1.0 <= self.retention_age <= 100 * 365 * 86400.0:
            raise ConfigError(f"retention_age must be between 1 second and 100 years, got {self.retention_age}")
        if self.max_message < 1024:
            raise ConfigError(f"max_message must be at least 1024 bytes, got {self.max_message}")
        if self.max_message > MAX_RECORD:
            raise ConfigError(
                f"max_message must be at most {MAX_RECORD} bytes (256 MiB, the largest record the store keeps), "
                f"got {self.max_message}"
            )
        server = (self.curve_secret_key, self.curve_producers, self.curve_subscribers)
        if any(v is not None for v in server) and None in server:
            raise ConfigError(
                "CurveZMQ needs curve_secret_key, curve_producers and curve_subscribers together "
                "(the broker's secret key file and the two allow-list directories); missing: "
                + ", ".join(n for n, v in zip(_CURVE_SERVER, server, strict=True) if v is None)
            )
        _check_control(self)
        if (self.curve_client_key is None) != (self.curve_upstream_key is None):
            missing = "curve_client_key" if self.curve_client_key is None else "curve_upstream_key"
            raise ConfigError(
                f"{missing} is missing: connecting to upstream brokers with CurveZMQ needs this broker's "
                "secret key file (curve_client_key) and the upstream's public key file (curve_upstream_key)"
            )
        if self.curve_client_key is not None and not self.upstream:
            raise ConfigError("curve_client_key and curve_upstream_key are for upstream brokers, but none is set")

    @property
    def curve(self) -> bool:
        """Whether the bound sockets use CurveZMQ."""
        return self.curve_secret_key is not None

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **flags: Any,
    ) -> BrokerConfig:
        """The settings ``logfabric broker`` runs with: later sources win.

        The service's defaults (the fields' defaults, but HTTP on at
        :data:`SERVICE_HTTP`), then ``file`` (JSON or TOML), then ``env``
        (``LOGFABRIC_BROKER_*``; the process's environment by default), then
        ``flags`` (None = unset).
        """
        merged: dict[str, Any] = service_defaults(cls)
        if file is not None:
            merged.update(_read_file(Path(file)))
        merged.update(from_env(cls, os.environ if env is None else env, skip=(CONFIG_VAR,)))
        merged.update({k: v for k, v in flags.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(f"unknown broker setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: coerce(cls, k, v) for k, v in merged.items()})

    def with_overrides(self, **changes: Any) -> BrokerConfig:
        """Return a copy with some settings changed (validated again)."""
        return replace(self, **changes)


def parse_http(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9102`` for IPv6), with a clear error."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"http must be HOST:PORT such as 0.0.0.0:9102, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _endpoint(name: str, value: object) -> None:
    try:
        check_endpoint(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


_CURVE_SERVER = ("curve_secret_key", "curve_producers", "curve_subscribers")


def _check_control(config: BrokerConfig) -> None:
    """Level control is refused unless operators are authenticated (CURVE) or the network is declared trusted."""
    if config.curve_operators is not None and not config.curve:
        raise ConfigError(
            "curve_operators needs CurveZMQ on: give curve_secret_key, curve_producers and curve_subscribers too"
        )
    if config.control is None:
        if config.curve_operators is not None or config.control_trust_network:
            raise ConfigError(
                "curve_operators and control_trust_network are for the control endpoint, which is off: "
                "set control (e.g. --control tcp://*:5560) or drop them"
            )
        return
    if config.curve and config.curve_operators is None:
        raise ConfigError(
            "control with CurveZMQ needs curve_operators: a directory of the public keys (NAME.key) of the "
            "people and tools allowed to change levels, separate from the producers and subscribers"
        )
    if config.curve and config.control_trust_network:
        raise ConfigError(
            "control_trust_network is for a broker without CurveZMQ; with CurveZMQ on, curve_operators decides "
            "who may change levels: drop control_trust_network"
        )
    if not config.curve and not config.control_trust_network:
        raise ConfigError(
            "control refuses to run in plaintext: anyone who reaches it could change levels. Turn CurveZMQ on "
            "with curve_operators (docs/security.md), or, on a network you trust, pass --control-trust-network "
            "(LOGFABRIC_BROKER_CONTROL_TRUST_NETWORK=1)"
        )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold an object of settings")
    return {k.replace("-", "_"): v for k, v in data.items()}
