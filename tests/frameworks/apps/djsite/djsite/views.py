"""Views that log: one record per order, and a view that fails (Django logs it with its traceback)."""

import logging

from django.http import HttpRequest, HttpResponse

log = logging.getLogger("shop.views")


def order(request: HttpRequest, n: int) -> HttpResponse:
    """Log one record for order ``n``."""
    log.info("order %d placed", n, extra={"order": n, "amount": n * 1.5})
    return HttpResponse(str(n))


def boom(request: HttpRequest) -> HttpResponse:
    """Fail: Django answers 500 and logs the error on ``django.request``."""
    raise ZeroDivisionError("division by zero")
