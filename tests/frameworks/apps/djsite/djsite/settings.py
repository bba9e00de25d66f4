"""Settings of a minimal Django project whose logging goes to the fabric (``LOGGING`` in the class form)."""

import os

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["djsite"]
ROOT_URLCONF = "djsite.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "fabric": {
            "class": "fabric.ZmqHandler",
            "endpoint": os.environ.get("LOGFABRIC_ENDPOINT", "tcp://127.0.0.1:5557"),
            "service": "shop-django",
            "level": "INFO",
        },
    },
    "root": {"handlers": ["fabric"], "level": "INFO"},
    # Django's own loggers (requests, errors, runserver) propagate to the root.
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
