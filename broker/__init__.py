"""The logfabric broker: forwards records from producers to subscribers.

Run it with ``logfabric broker`` (or ``python -m broker``), or embed it::

    from broker import Broker
    with Broker(push_ingest="tcp://127.0.0.1:*", egress="tcp://127.0.0.1:*") as b:
        print(b.endpoints)
"""

from broker.broker import Broker
from broker.config import BrokerConfig, ConfigError

__all__ = ["Broker", "BrokerConfig", "ConfigError"]
