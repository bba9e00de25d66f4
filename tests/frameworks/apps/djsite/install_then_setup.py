"""``fabric.install()`` first, then ``django.setup()``: the order a ``wsgi.py`` or ``manage.py`` often has."""

import logging
import os
import sys

import django

import fabric

fabric.install(level="INFO")  # endpoint and service from LOGFABRIC_ENDPOINT and LOGFABRIC_SERVICE
log = logging.getLogger("shop.boot")
log.info("before django.setup()", extra={"step": 0})

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings_plain")
django.setup()  # applies Django's logging configuration (a dictConfig)

for step in range(1, int(sys.argv[1]) + 1):
    log.info("after django.setup()", extra={"step": step})
