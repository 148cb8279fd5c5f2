"""Sink base class: a sink attached directly to a logger still never blocks the caller."""

from __future__ import annotations

import logging
import threading

from aiolog.testing import CaptureSink


def test_direct_attachment_uses_a_private_listener() -> None:
    """A sink used as a plain handler writes on aiolog's thread, not the caller's."""
    seen_threads: list[str] = []

    class ThreadNoting(CaptureSink):
        async def write(self, records: list[logging.LogRecord]) -> None:  # type: ignore[override]
            seen_threads.append(threading.current_thread().name)
            await super().write(records)

    sink = ThreadNoting("direct")
    log = logging.getLogger("test.direct")
    log.propagate = False
    log.addHandler(sink)
    try:
        log.warning("hello %s", "direct")
        assert sink.wait_for(1, 5)
    finally:
        log.removeHandler(sink)
        sink.close()
    assert ["hello direct"] == sink.messages
    assert ["aiolog-direct:direct"] == seen_threads
    assert sink._direct is None  # close() stopped the private listener


def test_sink_level_applies_when_attached_directly() -> None:
    """The handler level filters records before they are queued."""
    sink = CaptureSink("direct-level", level=logging.ERROR)
    log = logging.getLogger("test.direct.level")
    log.propagate = False
    log.addHandler(sink)
    try:
        log.warning("dropped by level")
        log.error("kept")
        assert sink.wait_for(1, 5)
    finally:
        log.removeHandler(sink)
        sink.close()
    assert ["kept"] == sink.messages


def test_repr_names_the_sink() -> None:
    """repr shows the class, the display name and the level."""
    assert "<CaptureSink 'mem' (NOTSET)>" == repr(CaptureSink("mem"))
