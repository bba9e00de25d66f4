"""The broker's one public error type."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which and why."""
