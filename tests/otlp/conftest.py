"""Fixtures for the OTLP export tests: real OTLP receivers, exporters, and producers wired to listeners.

Records travel for real: a ``ZmqHandler`` producer sends over 127.0.0.1 TCP to a
``ZmqListener`` whose handler is an ``OtlpHandler``, which exports to an OTLP
receiver in this process (tests/otlp/receivers.py). Everything a fixture makes
is closed at teardown, with bounded waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import fabric
from fabric.otlp import OtlpHandler
from tests.helpers.net import tcp_endpoint
from tests.otlp.receivers import GrpcReceiver, HttpReceiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """A started OTLP/HTTP receiver, stopped at teardown."""
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    """A started OTLP/gRPC receiver, stopped at teardown."""
    receiver = GrpcReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def make_otlp() -> Iterator[Callable[..., OtlpHandler]]:
    """A factory of OtlpHandlers (short batch delay), all closed at teardown within about a second."""
    made: list[OtlpHandler] = []

    def make(endpoint: str, **options: Any) -> OtlpHandler:
        options.setdefault("batch_delay", 0.05)
        options.setdefault("timeout", 5.0)
        handler = OtlpHandler(endpoint, **options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.flush_timeout = min(handler.flush_timeout, 1.0)
        handler.close()


@dataclass
class Pipeline:
    """A producer logger whose records reach ``otlp`` through a real listener."""

    logger: logging.Logger
    producer: fabric.ZmqHandler
    listener: fabric.ZmqListener
    otlp: OtlpHandler
    endpoint: str
    """Where the listener is bound (a raw PUSH there plays a hostile producer)."""


@pytest.fixture
def pipeline(
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_logger: Callable[..., logging.Logger],
) -> Callable[..., Pipeline]:
    """Wire ``logger -> ZmqHandler -> tcp -> ZmqListener -> otlp`` (push to a bound pull listener)."""

    def wire(otlp: OtlpHandler, *, codec: str = "protobuf", service: str = "otlp-svc") -> Pipeline:
        endpoint = tcp_endpoint()
        listener = make_listener(endpoint, otlp, mode="pull", bind=True)
        producer = make_handler(endpoint, mode="push", codec=codec, service=service)
        logger = make_logger(None, producer)
        return Pipeline(logger, producer, listener, otlp, endpoint)

    return wire
