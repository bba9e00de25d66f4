"""Factories behind the fixtures that hand out handlers, listeners and zmq contexts, each cleaned up on exit.

Also :class:`Link`, what the ``make_link`` fixture wires up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import zmq

import fabric
from tests.helpers.capture import Capture

H = TypeVar("H", bound=logging.Handler)


@contextlib.contextmanager
def handler_factory(
    service: str, linger: float | None = None, max_linger: float = 1.0
) -> Iterator[Callable[..., fabric.ZmqHandler]]:
    """Yield ``make(endpoint, **options)`` for ZmqHandlers (default ``service``, ``linger``); close all on exit.

    On exit each handler's linger is capped at ``max_linger`` so a closing
    handler never holds a test up for long.
    """
    made: list[fabric.ZmqHandler] = []

    def make(endpoint: str, **options: Any) -> fabric.ZmqHandler:
        options.setdefault("service", service)
        if linger is not None:
            options.setdefault("linger", linger)
        handler = fabric.ZmqHandler(endpoint, **options)
        made.append(handler)
        return handler

    try:
        yield make
    finally:
        for handler in made:
            handler.linger = min(handler.linger, max_linger)
            handler.close()


@contextlib.contextmanager
def listener_factory() -> Iterator[Callable[..., fabric.ZmqListener]]:
    """Yield ``make(endpoints, *handlers, start=True, **options)`` for ZmqListeners; stop all on exit."""
    made: list[fabric.ZmqListener] = []

    def make(endpoints: str | list[str], *handlers: logging.Handler, start: bool = True, **options: Any) -> Any:
        listener = fabric.ZmqListener(endpoints, *handlers, **options)
        made.append(listener)
        if start:
            listener.start()
        return listener

    try:
        yield make
    finally:
        for listener in made:
            listener.stop()


@contextlib.contextmanager
def counted_listener_factory(counter: Callable[[], H]) -> Iterator[Callable[..., tuple[fabric.ZmqListener, H]]]:
    """Yield ``make(endpoints, *handlers, **options)``: a started listener and the fresh ``counter()`` it feeds first.

    Every listener made is stopped on exit.
    """
    with listener_factory() as start:

        def make(
            endpoints: str | list[str], *handlers: logging.Handler, **options: Any
        ) -> tuple[fabric.ZmqListener, H]:
            handler = counter()
            return start(endpoints, handler, *handlers, **options), handler

        yield make


@contextlib.contextmanager
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """Yield a zmq context for raw sockets; on exit every socket of it is closed with linger 0."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


@dataclass(frozen=True)
class Link:
    """One producer handler wired to one started listener, with a logger that feeds the handler."""

    handler: fabric.ZmqHandler
    listener: fabric.ZmqListener
    capture: Capture
    logger: logging.Logger
    endpoint: str
