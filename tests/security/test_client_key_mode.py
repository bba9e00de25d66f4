"""A client's CURVE secret key file that group or others may read or write is refused, unless overridden.

Real key files (``logfabric keys generate``) whose mode each test sets; the
refusal happens when the handler, listener or subscription is created, before
any socket exists, so no broker is needed. One test does a real handshake with
an overridden key to show it still works.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

import fabric
from fabric.config import listen_from_config
from fabric.curve import ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY, CurveError, check_secret_key_mode
from tests.helpers.capture import PROBE, probe_until
from tests.helpers.keys import KeySet

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")

NOWHERE = "tcp://127.0.0.1:1"  # never connected: construction is all these tests need

BUILDERS = {
    "ZmqHandler": lambda **o: fabric.ZmqHandler(NOWHERE, **o),
    "ZmqListener": lambda **o: fabric.ZmqListener(NOWHERE, **o),
    "subscribe": lambda **o: fabric.subscribe(NOWHERE, **o),
}


def build(name: str, **options: Any) -> None:
    """Create the client ``name`` with ``options`` (and close what it opened)."""
    made = BUILDERS[name](**options)
    if isinstance(made, (fabric.ZmqHandler, fabric.Subscription)):
        made.close()


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits the override or keys from the environment running the suite."""
    for name in (ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY):
        monkeypatch.delenv(name, raising=False)


class TestRefusal:
    """An open secret key file is refused by every client, with the fix and the override in the message."""

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o660, 0o666], ids=oct)
    @pytest.mark.parametrize("client", sorted(BUILDERS))
    def test_an_open_key_is_refused(self, curve_keys: KeySet, client: str, mode: int) -> None:
        """A key readable or writable by group or others raises CurveError saying chmod 600 and how to override."""
        curve_keys.producer.chmod(mode)
        with pytest.raises(CurveError) as caught:
            build(client, **curve_keys.client(curve_keys.producer))
        message = str(caught.value)
        assert f"has mode {mode:04o}" in message
        assert f"chmod 600 {curve_keys.producer}" in message
        assert "curve_allow_open_key=True" in message and f"{ENV_ALLOW_OPEN_KEY}=1" in message

    @pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=oct)
    @pytest.mark.parametrize("client", sorted(BUILDERS))
    def test_a_private_key_is_accepted(self, curve_keys: KeySet, client: str, mode: int) -> None:
        """A key only its owner can read (0600, 0400, 0700) is accepted."""
        curve_keys.producer.chmod(mode)
        build(client, **curve_keys.client(curve_keys.producer))

    @pytest.mark.parametrize("client", sorted(BUILDERS))
    def test_an_open_key_named_by_the_environment_is_refused(
        self, curve_keys: KeySet, client: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Keys from $LOGFABRIC_CURVE_SERVER_KEY / $LOGFABRIC_CURVE_CLIENT_KEY are checked the same way."""
        curve_keys.producer.chmod(0o640)
        monkeypatch.setenv(ENV_SERVER_KEY, str(curve_keys.broker_public))
        monkeypatch.setenv(ENV_CLIENT_KEY, str(curve_keys.producer))
        with pytest.raises(CurveError, match=r"chmod 600 .*\(from LOGFABRIC_CURVE_SERVER_KEY"):
            build(client)

    def test_a_symlink_is_judged_by_the_file_it_names(self, curve_keys: KeySet, tmp_path: Path) -> None:
        """A 0777 symbolic link to a 0600 key is accepted; a link to a 0644 key is refused."""
        link = tmp_path / "link.key_secret"
        link.symlink_to(curve_keys.producer)
        build("ZmqListener", **curve_keys.client(link))
        curve_keys.producer.chmod(0o644)
        with pytest.raises(CurveError, match="has mode 0644"):
            build("ZmqListener", **curve_keys.client(link))

    def test_the_check_alone(self, curve_keys: KeySet, tmp_path: Path) -> None:
        """check_secret_key_mode refuses an open file, accepts a private one, and explains a missing one."""
        curve_keys.producer.chmod(0o600)
        check_secret_key_mode(curve_keys.producer)
        curve_keys.producer.chmod(0o640)
        with pytest.raises(CurveError, match=r"the secret key .* has mode 0640"):
            check_secret_key_mode(curve_keys.producer)
        with pytest.raises(CurveError, match="cannot be checked"):
            check_secret_key_mode(tmp_path / "missing.key_secret")


class TestOverride:
    """curve_allow_open_key=True or $LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1 accepts an open key; nothing else does."""

    @pytest.mark.parametrize("client", sorted(BUILDERS))
    def test_the_environment_variable_overrides(
        self, curve_keys: KeySet, client: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With LOGFABRIC_CURVE_ALLOW_OPEN_KEY=1 every client accepts a 0640 key."""
        curve_keys.producer.chmod(0o640)
        monkeypatch.setenv(ENV_ALLOW_OPEN_KEY, "1")
        build(client, **curve_keys.client(curve_keys.producer))

    @pytest.mark.parametrize("value", ["0", "", "yes", "true"])
    def test_other_values_do_not_override(
        self, curve_keys: KeySet, value: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only the value 1 overrides: 0, empty, yes and true still refuse."""
        curve_keys.producer.chmod(0o640)
        monkeypatch.setenv(ENV_ALLOW_OPEN_KEY, value)
        with pytest.raises(CurveError, match="chmod 600"):
            build("ZmqListener", **curve_keys.client(curve_keys.producer))

    def test_the_listener_keyword_overrides(self, curve_keys: KeySet) -> None:
        """ZmqListener(curve_allow_open_key=True) accepts a 0640 key; the check function takes allow_open."""
        curve_keys.producer.chmod(0o640)
        listener = fabric.ZmqListener(NOWHERE, curve_allow_open_key=True, **curve_keys.client(curve_keys.producer))
        assert listener.curve is not None
        check_secret_key_mode(curve_keys.producer, allow_open=True)

    def test_a_config_file_can_override(self, curve_keys: KeySet, tmp_path: Path) -> None:
        """listen_from_config accepts "curve_allow_open_key": true in its listener section."""
        curve_keys.producer.chmod(0o640)
        section = {"endpoints": [NOWHERE], **curve_keys.client(curve_keys.producer)}
        with pytest.raises(fabric.ConfigError, match="chmod 600"):
            listen_from_config({"version": 1, "listener": section})
        listener = listen_from_config({"version": 1, "listener": {**section, "curve_allow_open_key": True}})
        listener.stop()

    def test_an_overridden_key_still_completes_a_real_handshake(
        self, curve_keys: KeySet, start_curve_broker: Any, make_listener: Any, make_handler: Any, capture: Any
    ) -> None:
        """A 0640 subscriber key accepted by the override subscribes through a real CURVE broker."""
        curve_keys.subscriber.chmod(0o640)
        broker = start_curve_broker()
        options = curve_keys.client(curve_keys.subscriber)
        make_listener(broker.endpoints["egress"], capture, curve_allow_open_key=True, **options)
        producer = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
        probe_until(producer, lambda: len(capture.named(PROBE)))
        assert capture.named(PROBE)[0].levelno == logging.ERROR
