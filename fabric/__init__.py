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
(also ``fabric.tail.SafeFormatter``), which escapes control characters and marks
traceback lines, wherever they end up as text.

The supported surface is :data:`__all__`:

- :func:`install`, :class:`ZmqHandler`: ship this process's records (their
  options are listed in the README's "ZmqHandler options").
- :class:`ZmqListener`, :func:`subscribe`, :func:`listen_from_config`: receive
  them; ``subscribe()`` returns a :class:`Subscription`, which yields records
  and, where records were lost, a :class:`GapNotice`.
- :class:`SafeFormatter`: write received records as text safely.
- :func:`encode`, :func:`decode`, :class:`Limits`, :class:`MalformedRecord`:
  the wire codec and the caps on what a received record may hold.
- :class:`ConfigError`: the one error type for a configuration that cannot be
  used (an option, a config file, a CurveZMQ key file); a ``ValueError``.
- ``__version__``.

Key files are made and read with :mod:`fabric.curve` (``logfabric keys``);
modules whose names start with ``_`` are private.
"""

from __future__ import annotations

__version__ = "0.1.0"  # before the imports: cli and the OTLP transport read it while they load

from fabric import _dictconfig
from fabric._errors import ConfigError
from fabric._safe_format import SafeFormatter
from fabric.codec import Limits, MalformedRecord, decode, encode
from fabric.config import listen_from_config
from fabric.handler import ZmqHandler
from fabric.install import install
from fabric.listener import ZmqListener
from fabric.subscribe import GapNotice, Subscription, subscribe

__all__ = [
    "ConfigError",
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


_dictconfig.install()
