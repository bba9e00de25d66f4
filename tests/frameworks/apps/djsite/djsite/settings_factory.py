"""The project with the handler built by the ``"()"`` factory key, which every Python's dictConfig passes options to."""

import os

from djsite.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "fabric": {
            "()": "fabric.ZmqHandler",
            "endpoint": os.environ.get("LOGFABRIC_ENDPOINT", "tcp://127.0.0.1:5557"),
            "service": "shop-django",
            "level": "INFO",
        },
    },
    "root": {"handlers": ["fabric"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
