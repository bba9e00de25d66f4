"""structlog over the standard library, in either of its two stdlib recipes, shipped by ``fabric.install()``.

``python structlog_app.py formatter COUNT``: ``ProcessorFormatter.wrap_for_formatter``
(the event dict travels to the handler; a ``ProcessorFormatter`` would render it).
``python structlog_app.py kwargs COUNT``: ``render_to_log_kwargs`` (the key-values
become the record's ``extra``).
"""

import sys

import structlog

import fabric

recipe, count = sys.argv[1], int(sys.argv[2])

fabric.install(level="INFO")  # endpoint and service from LOGFABRIC_ENDPOINT and LOGFABRIC_SERVICE

if recipe == "kwargs":
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
else:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

log = structlog.get_logger("shop.orders").bind(user_id=42)
for n in range(count):
    log.info("order placed", order=n, amount=n * 1.5, paid=True, tags=["new", "web"])
try:
    {}["missing"]
except KeyError:
    log.exception("order failed", order=-1)
