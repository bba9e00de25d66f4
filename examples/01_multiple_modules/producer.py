"""Producer: the cookbook's main module, with a ZmqHandler instead of file and console handlers.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys

import auxiliary_module

import fabric


def main(endpoint: str) -> None:
    # create logger with 'spam_application'; its children in auxiliary_module propagate to it
    logger = logging.getLogger("spam_application")
    logger.setLevel(logging.DEBUG)
    handler = fabric.ZmqHandler(endpoint, mode="pub", service="spam")
    logger.addHandler(handler)
    handler.wait_ready()  # a pub producer sends once a subscription has reached it

    logger.info("creating an instance of auxiliary_module.Auxiliary")
    a = auxiliary_module.Auxiliary()
    logger.info("created an instance of auxiliary_module.Auxiliary")
    logger.info("calling auxiliary_module.Auxiliary.do_something")
    a.do_something()
    logger.info("finished auxiliary_module.Auxiliary.do_something")
    logger.info("calling auxiliary_module.some_function()")
    auxiliary_module.some_function()
    logger.info("done with auxiliary_module.some_function()")


if __name__ == "__main__":
    main(sys.argv[1])
