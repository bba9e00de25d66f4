"""CurveZMQ key files for the tests, laid out as docs/security.md shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fabric.curve import generate


@dataclass
class KeySet:
    """Key files for one test: the broker's pair, two allow-lists, and keys nobody registered."""

    root: Path
    broker_public: Path
    broker_secret: Path
    producers: Path  # allow-list directory: producer.key
    subscribers: Path  # allow-list directory: subscriber.key
    producer: Path  # producer.key_secret (kept outside the allow-list)
    subscriber: Path  # subscriber.key_secret
    stranger: Path  # stranger.key_secret, in no allow-list
    other_broker_public: Path  # another server's public key (a client holding the wrong one)

    def pair(self, name: str) -> Path:
        """Generate a fresh pair ``name`` in the keys root; return its secret file."""
        return generate(name, self.root / "extra")[1]

    def allow(self, directory: Path, secret: Path) -> None:
        """Copy the public half of ``secret``'s pair into an allow-list directory."""
        public = secret.with_name(secret.name.removesuffix("_secret"))
        (directory / public.name).write_bytes(public.read_bytes())

    def client(self, secret: Path) -> dict[str, str]:
        """The client options for a CURVE connection to the broker with ``secret``."""
        return {"curve_server_key": str(self.broker_public), "curve_client_key": str(secret)}

    def broker_flags(self) -> list[str]:
        """The ``python -m broker`` flags that turn CURVE on with these keys."""
        return [
            *("--curve-secret-key", str(self.broker_secret)),
            *("--curve-producers", str(self.producers)),
            *("--curve-subscribers", str(self.subscribers)),
        ]


def make_keys(root: Path) -> KeySet:
    """Generate every key a test needs under ``root`` (the same layout as docs/security.md)."""
    secrets = root / "secrets"
    broker_public, broker_secret = generate("broker", root / "broker")
    producers, subscribers = root / "producers", root / "subscribers"
    producers.mkdir()
    subscribers.mkdir()
    out = {}
    for name, allow in (("producer", producers), ("subscriber", subscribers), ("stranger", None)):
        public, secret = generate(name, secrets)
        if allow is not None:
            (allow / public.name).write_bytes(public.read_bytes())
        out[name] = secret
    other_public, _ = generate("other-broker", root / "other")
    return KeySet(
        root,
        broker_public,
        broker_secret,
        producers,
        subscribers,
        out["producer"],
        out["subscriber"],
        out["stranger"],
        other_public,
    )
