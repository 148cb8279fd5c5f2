"""JournaldSink: field names and encoding, URLs, and failures, against a datagram socket.

The socket (:class:`tests.integration.journald.DatagramPeer`) decodes the native protocol
the way journald does; tests/integration/test_journald.py runs the real journald.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog.sinks.journald import (
    CONFIRM_EVERY,
    DEFAULT_SOCKET,
    JournaldSink,
    encode_field,
    field_name,
)
from tests.helpers import LoopFactory, SignalsErrors, run
from tests.integration.journald import DatagramPeer, datagram_peer, decode_entry

pytestmark = pytest.mark.timeout(30)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Probe(SignalsErrors, JournaldSink):
    """A JournaldSink that signals its errors (to sequence tests without sleeping)."""


def record(
    msg: str = "hello", level: int = logging.INFO, name: str = "app.db", **extra: object
) -> logging.LogRecord:
    """A record as the listener hands it to sinks (message rendered)."""
    rec = logging.getLogger(name).makeRecord(name, level, __file__, 7, msg, (), None, extra=extra)
    rec.message = rec.getMessage()
    return rec


def fields(sink: JournaldSink, rec: logging.LogRecord) -> dict[str, bytes]:
    """The entry the sink makes for ``rec``, decoded; every name must appear once."""
    decoded = decode_entry(sink.entry(rec))
    names = [name for name, _ in decoded]
    assert len(set(names)) == len(names), names
    return dict(decoded)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[DatagramPeer]:
    """A socket where journald's would be, reading and decoding entries."""
    with datagram_peer(tmp_path / "socket") as made:
        yield made


# ---------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("user", "USER"),
        ("request-id", "REQUEST_ID"),
        ("MiXed.Case", "MIXED_CASE"),
        ("_private", "PRIVATE"),
        ("__dunder__", "DUNDER__"),
        ("9lives", "F9LIVES"),
        ("straße", "STRASSE"),
        ("ünï", "N_"),
        ("日本", "FIELD"),
        ("", "FIELD"),
        ("x" * 100, "X" * 64),
    ],
)
def test_field_names_follow_journalds_rules(name: str, expected: str) -> None:
    """[A-Z0-9_], not starting with _ or a digit, at most 64 characters, never empty."""
    assert expected == field_name(name)


def test_a_value_without_newline_is_name_equals_value() -> None:
    """The simple form, binary bytes but newline included as they are."""
    assert b"USER=ann\x00\xff=x\n" == encode_field("USER", b"ann\x00\xff=x")


def test_a_value_with_a_newline_uses_the_length_prefixed_form() -> None:
    """Name, newline, 64-bit little-endian length, the bytes, newline."""
    value = b"one\ntwo\n"
    assert b"MESSAGE\n" + struct.pack("<Q", 8) + value + b"\n" == encode_field("MESSAGE", value)
    assert [("MESSAGE", value)] == decode_entry(encode_field("MESSAGE", value))


@pytest.mark.parametrize(
    ("level", "priority"),
    [(5, b"7"), (10, b"7"), (20, b"6"), (25, b"6"), (30, b"4"), (40, b"3"), (50, b"2")],
)
def test_priority_is_the_syslog_severity_of_the_level(level: int, priority: bytes) -> None:
    """The nearest standard level at or below decides, as for syslog."""
    assert priority == fields(JournaldSink(), record(level=level))["PRIORITY"]


def test_an_entry_carries_origin_identifier_and_location() -> None:
    """MESSAGE, SYSLOG_IDENTIFIER, LOGGER, CODE_* and THREAD_NAME; no TID."""
    got = fields(JournaldSink(identifier="billing"), record("connected"))
    assert b"connected" == got["MESSAGE"]
    assert b"billing" == got["SYSLOG_IDENTIFIER"]
    assert b"app.db" == got["LOGGER"]
    assert (__file__.encode(), b"7") == (got["CODE_FILE"], got["CODE_LINE"])
    assert b"MainThread" == got["THREAD_NAME"]
    assert "TID" not in got
    assert "ASYNCIO_TASK" not in got


def test_structured_fields_are_upper_cased_and_keep_their_values() -> None:
    """extra= and context fields: strings and bytes as they are, others as JSON."""
    rec = record(user="ann", **{"req-n": 3, "blob": b"\x00\n\xff", "tags": ["a", "b"]})
    got = fields(JournaldSink(), rec)
    assert b"ann" == got["USER"]
    assert b"3" == got["REQ_N"]
    assert b"\x00\n\xff" == got["BLOB"]
    assert b'["a","b"]' == got["TAGS"]


def test_a_field_named_like_the_sinks_own_does_not_replace_it() -> None:
    """extra={"priority": ...} becomes EXTRA_PRIORITY; PRIORITY stays the severity."""
    got = fields(JournaldSink(), record(level=logging.ERROR, priority="high", logger="x"))
    assert (b"3", b"high") == (got["PRIORITY"], got["EXTRA_PRIORITY"])
    assert (b"app.db", b"x") == (got["LOGGER"], got["EXTRA_LOGGER"])


def test_an_exception_goes_into_message_and_its_own_fields() -> None:
    """MESSAGE shows the traceback below the message; EXCEPTION_TYPE/TEXT carry it alone."""
    try:
        raise KeyError("k")
    except KeyError:
        rec = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    rec.message = rec.getMessage()
    got = fields(JournaldSink(), rec)
    assert b"KeyError" == got["EXCEPTION_TYPE"]
    text = got["EXCEPTION_TEXT"].decode()
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith("KeyError: 'k'")
    assert b"failed\n" + got["EXCEPTION_TEXT"] == got["MESSAGE"]


def test_a_formatter_replaces_the_message_only() -> None:
    """format=json puts a JSON line in MESSAGE; the fields stay."""
    got = fields(JournaldSink(format="json"), record("hi", user="ann"))
    assert got["MESSAGE"].startswith(b"{")
    assert b'"message":"hi"' in got["MESSAGE"]
    assert b"ann" == got["USER"]


# ---------------------------------------------------------------------------- configuration


def test_urls_name_the_socket(tmp_path: Path) -> None:
    """``journald`` is the default socket; ``journald:PATH`` another one; query options."""
    default = aiolog.sink("journald")
    assert isinstance(default, JournaldSink)
    assert (DEFAULT_SOCKET, "journald") == (default.path, default.url)
    path = str(tmp_path / "sock")
    other = aiolog.sink(f"journald:{path}?identifier=web&level=WARNING&write_timeout=2")
    assert isinstance(other, JournaldSink)
    assert (path, f"journald:{path}") == (other.path, other.url)
    assert (b"web", logging.WARNING, 2.0) == (other.identifier, other.level, other.write_timeout)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("journald:run/socket", "bad path='run/socket': expected an absolute path"),
        (
            "journald:{file}",
            "bad path='{file}': expected an absolute path to journald's socket, not",
        ),
        ("journald:{dir}", "bad path='{dir}': expected an absolute path to journald's socket, not"),
        ("journald?identifer=x", "unknown option 'identifer': expected one of backoff_initial"),
        ("journald?write_timeout=-1", "bad write_timeout='-1': expected a duration"),
        ("journald?format=xml", "bad format='xml': expected one of json, logfmt, text"),
        ("journal:/run/x", "bad scheme='journal'"),
    ],
)
def test_bad_settings_fail_at_construction(tmp_path: Path, url: str, message: str) -> None:
    """A wrong path or option is an OptionError naming the URL and it, when the sink is made."""
    (tmp_path / "file").write_text("")
    url = url.format(file=tmp_path / "file", dir=tmp_path)
    message = message.format(file=tmp_path / "file", dir=tmp_path)
    with pytest.raises(aiolog.OptionError) as info:
        JournaldSink.from_url(url)
    assert str(info.value).startswith(f"sink {url!r}: {message}"), str(info.value)


def test_a_bad_path_in_code_names_the_constructor() -> None:
    """JournaldSink("relative") says JournaldSink(), as the other constructors do."""
    with pytest.raises(aiolog.OptionError, match=r"^JournaldSink\(\): bad path='sock'"):
        JournaldSink("sock")


# ---------------------------------------------------------------------------- sending


def test_records_arrive_in_order_through_a_pipeline(peer: DatagramPeer) -> None:
    """Every record is one entry, in order; written counts them; one connect."""
    sink = JournaldSink(peer.path)
    with aiolog.configure([sink]) as pipeline:
        for i in range(500):
            logging.getLogger("order").info("n=%d", i)
        assert pipeline.flush(10)
        stats = pipeline.stats()["sinks"][sink.display_name]
    assert [f"n={i}" for i in range(500)] == [m for m in peer.messages() if m.startswith("n=")]
    assert (500, 0, 1) == (stats["written"], stats["dropped"], stats["connects"])


def test_a_large_entry_goes_through_a_sealed_memfd(peer: DatagramPeer) -> None:
    """An entry over a datagram's size arrives whole as a memfd; memfds counts it."""
    big = "".join(f"{i:06d}\n" for i in range(50_000))  # 350 KB
    sink = JournaldSink(peer.path)
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("big").warning(big)
        logging.getLogger("big").warning("small")
        assert pipeline.flush(10)
    assert [big.rstrip("\n"), "small"] == peer.messages()
    assert (1, 1) == (peer.memfds, sink.memfds)


def test_sending_never_blocks_the_loop(
    peer: DatagramPeer, blockbuster: Any, loop_factory: LoopFactory
) -> None:
    """Datagrams, the memfd of a large entry and the delivery check pass blockbuster."""
    sink = JournaldSink(peer.path)
    records = [record(f"n={i}") for i in range(CONFIRM_EVERY * 3)] + [record("x" * 300_000)]

    async def main() -> Any:
        sink.open()
        try:
            return await sink.write(records)
        finally:
            await sink.aclose()
            sink.release()

    assert 0 == run(main, loop_factory)
    assert peer.wait_for(lambda p: len(p.entries) == len(records))


def test_a_missing_socket_is_retried_until_journald_is_there(tmp_path: Path) -> None:
    """No socket at start: the error says where, the sink retries, then delivers."""
    path = tmp_path / "socket"
    sink = Probe(str(path), backoff_initial=0.01, backoff_max=0.05)
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("late").warning("while missing")
        assert sink.failed.wait(10)
        assert sink.last_error is not None
        assert sink.last_error.startswith(f"FileNotFoundError: cannot reach journald at {path}")
        with datagram_peer(path) as peer:
            assert pipeline.flush(10)
            assert ["while missing"] == peer.messages()
        stats = pipeline.stats()["sinks"][sink.display_name]
    assert (1, 0) == (stats["written"], stats["dropped"])
    assert stats["retries"] >= 1
    assert 1 == stats["connects"]


def test_a_journald_that_reads_nothing_costs_the_batch_counted(tmp_path: Path) -> None:
    """Sent but never read within write_timeout: counted lost, with the reason."""
    with datagram_peer(tmp_path / "socket", read=False) as peer:
        sink = JournaldSink(peer.path, write_timeout=0.3)
        records = [record(f"n={i}") for i in range(3)]

        async def main() -> Any:
            sink.open()
            try:
                return await sink.write(records)
            finally:
                await sink.aclose()
                sink.release()

        assert 3 == run(main)
    assert sink.last_error is not None
    assert "read nothing for 0.3s; 3 record(s) counted as lost" in sink.last_error


def test_a_journald_gone_between_batches_loses_nothing(tmp_path: Path) -> None:
    """Its successor gets the next batch: the refused datagram is sent again, once."""
    path = tmp_path / "socket"
    sink = Probe(str(path), backoff_initial=0.01, backoff_max=0.05)

    async def main() -> tuple[Any, Any]:
        sink.open()
        try:
            with datagram_peer(path) as first:
                assert 0 == await sink.write([record("to the first")])
            with datagram_peer(path) as second:
                lost = await sink.write([record("to the second")])
                await asyncio.to_thread(second.wait_for, lambda p: len(p.entries) == 1)
                return (first.messages(), second.messages()), lost
        finally:
            await sink.aclose()
            sink.release()

    (firsts, seconds), lost = run(main)
    assert (["to the first"], ["to the second"], 0) == (firsts, seconds, lost)
    assert 2 == sink.connects
    assert sink.last_error is not None
    assert "went away" in sink.last_error


def test_a_journald_whose_socket_stays_full_costs_one_timeout_per_batch(
    tmp_path: Path, loop_factory: LoopFactory
) -> None:
    """No room for write_timeout: the rest of the batch is dropped at once, one error."""
    with datagram_peer(tmp_path / "socket", read=False) as peer:
        sink = JournaldSink(peer.path, write_timeout=0.3)
        # 100 KB each: two fill the socket's send buffer, whatever the queue length.
        records = [record(f"{i}" * 100_000) for i in range(5)]

        async def main() -> Any:
            sink.open()
            try:
                return await sink.write(records)
            finally:
                await sink.aclose()
                sink.release()

        assert len(records) == run(main, loop_factory)
    assert sink.last_error is not None
    assert "took no datagram for 0.3s; dropped the rest of the batch" in sink.last_error
    assert 1 == sink.errors
