"""logfabric: ship real Python LogRecords over ZeroMQ, and receive them safely.

Producers::

    import fabric
    fabric.install("tcp://broker:5557", level="INFO")

Subscribers::

    with fabric.ZmqListener("tcp://broker:5558", logging.StreamHandler(), level="WARNING"):
        ...

    for record in fabric.subscribe("tcp://broker:5558", loggers=["app.db"]):
        ...

Remote records are untrusted text: write them through :class:`SafeFormatter`
(``fabric.tail.SafeFormatter``), which escapes control characters and marks
traceback lines, wherever they end up as text.
"""

from __future__ import annotations

from fabric import _dictconfig
from fabric.codec import Limits, MalformedRecord, decode, encode
from fabric.config import ConfigError, listen_from_config
from fabric.curve import CurveError, CurveKeys
from fabric.handler import ZmqHandler
from fabric.install import install
from fabric.listener import ZmqListener
from fabric.subscribe import GapNotice, Subscription, subscribe
from fabric.tail import SafeFormatter

__all__ = [
    "ConfigError",
    "CurveError",
    "CurveKeys",
    "GapNotice",
    "Limits",
    "MalformedRecord",
    "SafeFormatter",
    "Subscription",
    "ZmqHandler",
    "ZmqListener",
    "__version__",
    "decode",
    "encode",
    "install",
    "listen_from_config",
    "subscribe",
]

__version__ = "0.1.0"

_dictconfig.install()
