"""Secret key files that group or others may read or write are refused at start, unless explicitly allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broker import Broker
from broker.config import BrokerConfig, ConfigError
from tests.helpers.broker import BrokerProc
from tests.helpers.keys import KeySet

pytestmark = pytest.mark.timeout(60)


class TestBrokerSecretKeyMode:
    """The broker's own secret key file (``--curve-secret-key``) in a real broker process."""

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o620], ids=["0640", "0604", "0620"])
    def test_open_key_file_is_refused_with_the_fix(
        self, start_broker: Callable[..., BrokerProc], curve_keys: KeySet, mode: int
    ) -> None:
        """A key file group or others may read or write stops the broker with status 2 and says to chmod 600 it."""
        curve_keys.broker_secret.chmod(mode)
        b = start_broker(*curve_keys.broker_flags(), wait=False)
        assert b.wait(timeout=20) == 2, b.stderr()
        err = b.stderr()
        assert f"chmod 600 {curve_keys.broker_secret}" in err, err
        assert f"{mode:04o}" in err and "--allow-open-secret-key" in err, err
        assert "Traceback" not in err, err

    def test_private_key_file_starts(self, start_broker: Callable[..., BrokerProc], curve_keys: KeySet) -> None:
        """A mode 0600 key file starts the broker (ready), with no word about the key's mode."""
        curve_keys.broker_secret.chmod(0o600)
        b = start_broker(*curve_keys.broker_flags())
        assert b.get("/readyz")[0] == 200
        assert "chmod" not in b.stderr()

    def test_flag_accepts_an_open_key_file(self, start_broker: Callable[..., BrokerProc], curve_keys: KeySet) -> None:
        """--allow-open-secret-key starts the broker with a mode 0644 key file."""
        curve_keys.broker_secret.chmod(0o644)
        b = start_broker(*curve_keys.broker_flags(), "--allow-open-secret-key")
        assert b.get("/readyz")[0] == 200


class TestOverrideSetting:
    """The override as a variable and a config value, and the upstream client key, in embedded brokers."""

    def test_variable_is_parsed_like_the_other_settings(self) -> None:
        """LOGFABRIC_BROKER_ALLOW_OPEN_SECRET_KEY takes 1/0/true/false; anything else is a clear error."""
        var = "LOGFABRIC_BROKER_ALLOW_OPEN_SECRET_KEY"
        assert BrokerConfig.load(env={var: "1"}).allow_open_secret_key is True
        assert BrokerConfig.load(env={var: "true"}).allow_open_secret_key is True
        assert BrokerConfig.load(env={var: "0"}).allow_open_secret_key is False
        assert BrokerConfig.load(env={}).allow_open_secret_key is False
        with pytest.raises(ConfigError, match="allow_open_secret_key must be true or false"):
            BrokerConfig.load(env={var: "sometimes"})

    def test_variable_accepts_an_open_key_file(self, curve_keys: KeySet) -> None:
        """With the variable set to 1 an embedded broker starts on a mode 0640 key file."""
        curve_keys.broker_secret.chmod(0o640)
        config = BrokerConfig.load(
            env={"LOGFABRIC_BROKER_ALLOW_OPEN_SECRET_KEY": "1"},
            pub_ingest="tcp://127.0.0.1:*",
            push_ingest="tcp://127.0.0.1:*",
            egress="tcp://127.0.0.1:*",
            http="off",
            curve_secret_key=str(curve_keys.broker_secret),
            curve_producers=str(curve_keys.producers),
            curve_subscribers=str(curve_keys.subscribers),
        )
        broker = Broker(config).start()
        try:
            assert broker.ready
        finally:
            broker.stop(drain_timeout=0)

    def test_open_upstream_client_key_is_refused(self, curve_keys: KeySet) -> None:
        """The secret key for --upstream (curve_client_key) is checked the same way, before anything binds."""
        client_secret = curve_keys.pair("client")
        client_secret.chmod(0o644)
        options: dict[str, Any] = {
            "pub_ingest": "tcp://127.0.0.1:*",
            "push_ingest": "tcp://127.0.0.1:*",
            "egress": "tcp://127.0.0.1:*",
            "upstream": ("tcp://127.0.0.1:9",),
            "curve_client_key": str(client_secret),
            "curve_upstream_key": str(curve_keys.broker_public),
        }
        with pytest.raises(ConfigError, match=r"\(curve_client_key\) has mode 0644.*chmod 600"):
            Broker(**options).start()
        broker = Broker(**options, allow_open_secret_key=True).start()
        try:
            assert broker.ready
        finally:
            broker.stop(drain_timeout=0)
