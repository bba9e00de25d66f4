"""The one error type of the fabric package."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A client configuration that cannot be used; the message says why, on one line.

    Raised for a bad :class:`fabric.ZmqHandler` or :func:`fabric.install`
    option, a subscriber configuration file or setting
    (:func:`fabric.listen_from_config`), and a CurveZMQ key or key file that
    cannot be used (:class:`fabric.curve.CurveError` is a subclass). A
    ``ValueError``, so ``except ValueError`` keeps catching it.
    """
