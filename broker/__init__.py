"""The logfabric broker: forwards records from producers to subscribers.

Run it with ``logfabric broker`` (or ``python -m broker``), or embed it::

    from broker import Broker
    with Broker(push_ingest="tcp://127.0.0.1:*", egress="tcp://127.0.0.1:*") as b:
        print(b.endpoints)

Every error for a setting the broker cannot use, from :class:`BrokerConfig`
or from :meth:`Broker.start` (a ZeroMQ endpoint it cannot bind or connect, a
key file or allow-list it cannot use), is a :class:`ConfigError`, a
``ValueError``. A start that fails for another reason (the HTTP port is taken,
prometheus-client is missing) raises ``RuntimeError``.
"""

from broker._errors import ConfigError
from broker.broker import Broker
from broker.config import BrokerConfig

__all__ = ["Broker", "BrokerConfig", "ConfigError"]
