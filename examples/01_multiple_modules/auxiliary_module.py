"""The cookbook's auxiliary module, unchanged: it only creates child loggers."""

from __future__ import annotations

import logging

# create logger
module_logger = logging.getLogger("spam_application.auxiliary")


class Auxiliary:
    def __init__(self) -> None:
        self.logger = logging.getLogger("spam_application.auxiliary.Auxiliary")
        self.logger.info("creating an instance of Auxiliary")

    def do_something(self) -> None:
        self.logger.info("doing something")
        a = 1 + 1
        self.logger.info("done doing something (1 + 1 = %d)", a)


def some_function() -> None:
    module_logger.info('received a call to "some_function"')
