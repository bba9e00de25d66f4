"""The same project without ``LOGGING``: Django applies only its default logging configuration."""

from djsite.settings import *  # noqa: F403

LOGGING: dict[str, object] = {}
