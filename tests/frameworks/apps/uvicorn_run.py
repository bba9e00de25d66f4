"""``fabric.install()`` first, then ``uvicorn.run()``.

``python uvicorn_run.py PORT``: ``uvicorn.run()`` applies its own logging
configuration (a dictConfig). ``python uvicorn_run.py PORT keep``:
``log_config=None`` tells uvicorn to keep the logging already set up.
"""

import logging
import sys

import uvicorn

import fabric

fabric.install(level="INFO")  # endpoint and service from LOGFABRIC_ENDPOINT and LOGFABRIC_SERVICE
logging.getLogger("shop.boot").info("before uvicorn.run()")
if sys.argv[2:] == ["keep"]:
    uvicorn.run("asgi_app:app", host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
else:
    uvicorn.run("asgi_app:app", host="127.0.0.1", port=int(sys.argv[1]))  # dictConfig(uvicorn's LOGGING_CONFIG)
