"""Fixtures for every test: logging state restored after each test, loops, blockbuster."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import LOOP_FACTORIES, LoopFactory


@pytest.fixture(autouse=True)
def _restore_logging_state() -> Iterator[None]:
    """Shut aiolog down; put the root and ``asyncio`` loggers and the record factory back."""
    root = logging.getLogger()
    aio = logging.getLogger("asyncio")
    root_handlers = root.handlers[:]
    root_filters = root.filters[:]
    root_level = root.level
    disable = logging.Logger.manager.disable
    raise_exceptions = logging.raiseExceptions
    aio_state = (aio.level, aio.handlers[:], aio.propagate)
    factory = logging.getLogRecordFactory()  # dictConfig'd handlers install FastLogRecord
    try:
        yield
    finally:
        # Only if the test imported it; getattr because the module may still lack it.
        shutdown = getattr(sys.modules.get("aiolog"), "shutdown", None)
        try:
            if shutdown is not None:
                shutdown(timeout=5)
        finally:
            logging.captureWarnings(False)
            root.handlers[:] = root_handlers
            root.filters[:] = root_filters
            root.setLevel(root_level)
            logging.disable(disable)
            logging.raiseExceptions = raise_exceptions
            aio.setLevel(aio_state[0])
            aio.handlers[:] = aio_state[1]
            aio.propagate = aio_state[2]
            logging.setLogRecordFactory(factory)


@pytest.fixture(params=LOOP_FACTORIES)
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """``asyncio.new_event_loop`` and, where installed, ``uvloop.new_event_loop``."""
    factory: LoopFactory = request.param
    return factory


@pytest.fixture
def blockbuster() -> Iterator[Any]:
    """Make blocking calls (file, socket, sleep, ...) made on a running event loop raise.

    Opt in by naming the fixture; it covers every loop that runs during the test, the
    listener's included.
    """
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx() as bb:
        yield bb
