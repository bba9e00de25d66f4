"""``manage.py shiplogs N``: log N records and one error with its traceback."""

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

log = logging.getLogger("shop.jobs")


class Command(BaseCommand):
    """Log ``count`` INFO records and one ERROR with a traceback."""

    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        for n in range(options["count"]):
            log.info("job %d done", n, extra={"job": n, "ok": True})
        try:
            {}["missing"]
        except KeyError:
            log.exception("job failed", extra={"job": -1})
