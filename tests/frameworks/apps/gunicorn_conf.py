"""gunicorn settings: preload the app, three sync workers, every record (gunicorn's own too) to the fabric."""

import os

workers = 3
worker_class = "sync"
preload_app = True

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "fabric": {
            "class": "fabric.ZmqHandler",
            "endpoint": os.environ.get("LOGFABRIC_ENDPOINT", "tcp://127.0.0.1:5557"),
            "service": "shop-web",
            "level": "INFO",
        },
    },
    "root": {"handlers": ["fabric"], "level": "INFO"},
    # gunicorn's own loggers propagate to the root instead of printing.
    "loggers": {
        "gunicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
        "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
