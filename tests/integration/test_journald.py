"""JournaldSink against the host's real systemd-journald, run in a private mount namespace."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.contextvars

import aiolog
from aiolog.sinks.journald import CONFIRM_EVERY, JournaldSink
from tests.helpers import SignalsErrors
from tests.integration.journald import Journald, text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


@pytest.fixture(scope="module")
def journald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journald]:
    """One journald for the module's tests (each test uses its own SYSLOG_IDENTIFIER)."""
    server = Journald(tmp_path_factory.mktemp("journald"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_journald(tmp_path: Path) -> Iterator[Journald]:
    """A journald the test stops and starts again itself (not started yet)."""
    server = Journald(tmp_path / "journald")
    try:
        yield server
    finally:
        server.stop()


class Probe(SignalsErrors, JournaldSink):
    """A JournaldSink that signals its errors and counts its sends (to sequence tests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sends = 0
        self.sent = threading.Condition()

    async def _send(self, sock: socket.socket, data: bytes) -> bool:
        result = await super()._send(sock, data)
        with self.sent:
            self.sends += 1
            self.sent.notify_all()
        return result


def test_ten_thousand_records_arrive_with_their_fields(journald: Journald) -> None:
    """Every record, in order, with PRIORITY, identifier, CODE_*, LOGGER, task and fields."""
    app = "ten-thousand"
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    log = logging.getLogger("app.journal")

    async def worker() -> None:
        tenant.set("acme")
        for i in range(10_000):
            log.log(levels[i % 5], "n=%d", i, extra={"user-id": i % 7, "order": {"n": i}})

    async def main() -> None:
        await asyncio.create_task(worker(), name="producer-1")

    sink = JournaldSink(journald.socket, identifier=app)
    with aiolog.configure([sink], level="DEBUG") as pipeline:
        asyncio.run(main())
        assert pipeline.flush(60)
        stats = pipeline.stats()["sinks"][sink.display_name]
    everything = journald.wait_for(app, stats["written"])  # asyncio's "Using selector" too
    entries = [e for e in everything if e["LOGGER"] == "app.journal"]
    assert (len(everything), 0) == (stats["written"], stats["dropped"])
    assert [f"n={i}" for i in range(10_000)] == [text(e["MESSAGE"]) for e in entries]
    assert [["7", "6", "4", "3", "2"][i % 5] for i in range(10_000)] == [
        e["PRIORITY"] for e in entries
    ]
    assert [str(i % 7) for i in range(10_000)] == [e["USER_ID"] for e in entries]
    assert [f'{{"n":{i}}}' for i in range(10_000)] == [e["ORDER"] for e in entries]
    line = str(worker.__code__.co_firstlineno + 3)
    coro = "test_ten_thousand_records_arrive_with_their_fields.<locals>.worker"
    for name, value in [
        ("SYSLOG_IDENTIFIER", app),
        ("CODE_FILE", __file__),
        ("CODE_LINE", line),
        ("CODE_FUNC", "worker"),
        ("THREAD_NAME", "MainThread"),
        ("ASYNCIO_TASK", "producer-1"),
        ("ASYNCIO_CORO", coro),
        ("TENANT", "acme"),
    ]:
        assert {value} == {e[name] for e in entries}, name
    assert {"journal"} == {e["_TRANSPORT"] for e in entries}


def test_a_300_kb_message_arrives_whole_through_a_memfd(journald: Journald) -> None:
    """Too large for a datagram (EMSGSIZE): sent as a sealed memfd, and arrives whole."""
    app = "large"
    big = "".join(f"{i:07d} ünï ☃\n" for i in range(20_000))[:300_000]
    sink = JournaldSink(journald.socket, identifier=app)
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("big").warning(big)
        logging.getLogger("big").warning("after")
        assert pipeline.flush(20)
        stats = pipeline.stats()["sinks"][sink.display_name]
    entries = journald.wait_for(app, 2)
    assert [big.rstrip("\n"), "after"] == [text(e["MESSAGE"]) for e in entries]
    assert (2, 1) == (stats["written"], stats["memfds"])


def test_newlines_and_binary_content_arrive_intact(journald: Journald) -> None:
    """Multi-line text, control bytes, '=' and raw bytes values; the traceback's fields."""
    app = "binary"
    message = 'first\nsecond = "x" \x00 nul \x1b[31m esc\r\nthird — ünïcødé 𝄞\n\nlast'
    raw = bytes(range(256))
    sink = JournaldSink(journald.socket, identifier=app)
    with aiolog.configure([sink]) as pipeline:
        log = logging.getLogger("binary")
        log.warning(message, extra={"payload": raw, "note": "a=b\nc"})
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("caught")
        assert pipeline.flush(20)
    first, second = journald.wait_for(app, 2)
    assert message == text(first["MESSAGE"])
    assert list(raw) == first["PAYLOAD"]
    assert "a=b\nc" == text(first["NOTE"])
    assert "ValueError" == second["EXCEPTION_TYPE"]
    traceback = text(second["EXCEPTION_TEXT"])
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert traceback.endswith("ValueError: bad\nvalue")
    assert f"caught\n{traceback}" == text(second["MESSAGE"])
    assert "3" == second["PRIORITY"]


def test_structlog_fields_and_bound_variables_become_fields(journald: Journald) -> None:
    """structlog's event keys and its contextvars arrive as upper-case fields."""
    app = "structlog"
    sink = JournaldSink(journald.socket, identifier=app)
    try:
        with aiolog.configure([sink], structlog=True) as pipeline:
            structlog.contextvars.bind_contextvars(request_id="r-1")
            structlog.get_logger("sl").warning("user logged in", user="ann", roles=["a", "b"])
            assert pipeline.flush(20)
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    (entry,) = journald.wait_for(app, 1)
    assert ("user logged in", "4", "sl") == (entry["MESSAGE"], entry["PRIORITY"], entry["LOGGER"])
    assert ("ann", '["a","b"]', "r-1") == (entry["USER"], entry["ROLES"], entry["REQUEST_ID"])


def test_journald_restarted_mid_stream_keeps_the_accounts_exact(own_journald: Journald) -> None:
    """journald stopped while records flow, then started again: every record counted
    once; at least as many arrived as were counted written, none twice; the rest dropped."""
    app = "restarted"
    total = 6000
    sink = Probe(own_journald.socket, identifier=app, backoff_initial=0.01, backoff_max=0.1)
    own_journald.start()
    with aiolog.configure([sink]) as pipeline:
        log = logging.getLogger("restarted")
        stopped = False
        for i in range(total):
            log.warning("n=%d", i)
            if i == total // 3:
                # Mid-stream: wait (bounded) until the sink is sending, then stop journald.
                assert wait_until(lambda: written(pipeline, sink) >= 500)
                own_journald.stop()
                stopped = True
            if stopped and i == total // 2:
                assert sink.failed.wait(20)  # the sink noticed while records kept coming
                own_journald.start()
        pipeline.flush(60)  # False: records were lost
        stats = pipeline.stats()["sinks"][sink.display_name]
    assert 0 == stats["buffered"]
    entries = own_journald.wait_for(app, stats["written"])
    arrived = [text(e["MESSAGE"]) for e in entries if e["LOGGER"] == "restarted"]
    numbers = [int(m.removeprefix("n=")) for m in arrived]
    assert total == stats["offered"] == stats["written"] + stats["dropped"]
    assert len(numbers) == len(set(numbers)), "a record arrived twice"
    assert numbers == sorted(numbers)
    assert stats["written"] <= len(numbers) <= total
    assert stats["dropped"] <= CONFIRM_EVERY  # only what was in flight when it stopped
    assert total - 1 == numbers[-1]  # what came after the restart arrived
    assert 2 == sink.connects
    assert sink.errors >= 1


def written(pipeline: aiolog.Pipeline, sink: JournaldSink) -> int:
    """What the pipeline counts as written to ``sink`` so far."""
    count: int = pipeline.stats()["sinks"][sink.display_name]["written"]
    return count


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll a cheap in-process condition against a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_what_journald_never_read_is_counted_dropped_not_written(
    own_journald: Journald,
) -> None:
    """Datagrams the kernel took but journald never read (frozen, then killed) are
    dropped: "written" waits for journald to read, then checks it is still there."""
    app = "never-read"
    sink = Probe(own_journald.socket, identifier=app, backoff_initial=0.01, backoff_max=0.1)
    own_journald.start()
    with aiolog.configure([sink]) as pipeline:
        log = logging.getLogger("never-read")
        for i in range(3):
            log.warning("before %d", i)
        assert pipeline.flush(20)
        own_journald.freeze()
        for i in range(5):  # fewer than a socket queues: all five are sent at once
            log.warning("frozen %d", i)
        with sink.sent:
            assert sink.sent.wait_for(lambda: sink.sends == 8, 20)
        own_journald.kill()
        own_journald.start()
        log.warning("after")
        assert not pipeline.flush(20)  # five were lost
        stats = pipeline.stats()["sinks"][sink.display_name]
    entries = own_journald.wait_for(app, 4)
    arrived = [text(e["MESSAGE"]) for e in entries if e["LOGGER"] == "never-read"]
    assert ["before 0", "before 1", "before 2", "after"] == arrived
    assert (9, 4, 5) == (stats["offered"], stats["written"], stats["dropped"])
    assert sink.last_error is not None
