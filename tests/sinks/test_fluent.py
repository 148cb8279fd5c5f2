"""FluentSink: URL options, the msgpack encoding, and acks that never come (a silent peer).

The protocol against a real receiver is tested in tests/integration/test_fluent.py.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import struct
import sys
from typing import Any

import msgpack
import pytest

import aiolog
from aiolog.sinks.fluent import FluentSink, event_time
from tests.integration.peers import tcp_peer


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "app.x", "levelno": logging.WARNING, "levelname": "WARNING", "msg": message}
    )
    made.created = 1_796_000_000.123456
    made.__dict__.update(extra)
    return made


# ---------------------------------------------------------------------------- options


def test_url_defaults() -> None:
    """Port 24224, tag "aiolog", acks on, no compression, no handshake."""
    sink = FluentSink.from_url("fluent://logs.internal")
    assert ("logs.internal", 24224, "aiolog") == (sink.host, sink.port, sink.tag)
    assert (True, False, None, None) == (sink.require_ack, sink.compress, sink.shared_key, sink.tls)


def test_url_path_is_the_tag_and_userinfo_the_user() -> None:
    """The path (unquoted) is the tag; user:password@ feed the handshake; both redacted."""
    sink = FluentSink.from_url(
        "fluent://ann:p%40ss@127.0.0.1:5000/app.billing%2Fx?shared_key=k&compress=gzip"
        "&require_ack=false&ack_timeout=2.5"
    )
    assert ("app.billing/x", "ann", "p@ss", "k") == (
        sink.tag,
        sink.username,
        sink._password,
        sink.shared_key,
    )
    assert (True, False, 2.5) == (sink.compress, sink.require_ack, sink.ack_timeout)
    assert "p%40ss" not in sink.url
    assert "shared_key=***" in sink.url
    assert "k&" not in repr(sink)


def test_aiolog_sink_knows_the_schemes() -> None:
    """aiolog.sink() builds a FluentSink for fluent:// and fluent+tls://."""
    assert isinstance(aiolog.sink("fluent://127.0.0.1:1/t"), FluentSink)
    tls = aiolog.sink("fluent+tls://127.0.0.1:1/t?verify=false")
    assert isinstance(tls, FluentSink)
    assert tls.tls is not None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("fluent://h/t?ca=/x.pem", "unknown option 'ca'"),
        ("fluent://h/t?colour=red", "unknown option 'colour'"),
        ("fluent://h/t?compress=zstd", "bad compress='zstd': expected one of none, gzip"),
        ("fluent://h/t?require_ack=maybe", "bad require_ack='maybe'"),
        ("fluent://h/t?ack_timeout=0", "bad ack_timeout='0'"),
        ("fluent://ann:pw@h/t", "bad username='ann': expected a user only with shared_key"),
        ("fluent://h/t?shared_key=k&username=ann", "bad password='***'"),
        ("fluent://h:99999/t", "bad port='99999'"),
        ("fluent+tls://h/t?ca=/nonexistent.pem", "bad ca='/nonexistent.pem'"),
    ],
)
def test_bad_options_fail_at_configure_time(url: str, message: str) -> None:
    """Each mistake is an OptionError naming the URL and the option, when the sink is built."""
    with pytest.raises(aiolog.OptionError) as info:
        FluentSink.from_url(url)
    assert str(info.value).startswith("sink 'fluent")
    assert message in str(info.value)
    assert "pw" not in str(info.value).replace("password", "")


def test_a_missing_msgpack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without msgpack the URL fails at configure time, saying what to install."""
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ValueError, match=r"pip install msgpack .*'fluent' extra"):
        aiolog.sink("fluent://127.0.0.1:1/t?shared_key=secret")


# ---------------------------------------------------------------------------- encoding


def test_event_time_agrees_with_the_timestamp_field() -> None:
    """Seconds and nanoseconds, rounded to the microsecond like record_to_dict's timestamp."""
    assert (1_796_000_000, 123_456_000) == event_time(1_796_000_000.123456)
    assert (1_796_000_001, 0) == event_time(1_796_000_000.9999997)


def test_an_entry_is_event_time_and_the_record_map() -> None:
    """[ExtType(0, seconds + nanoseconds, big-endian), {timestamp, level, logger, ...}]."""
    sink = FluentSink("127.0.0.1", 1)
    time_, body = msgpack.unpackb(sink.entry(record(user="ann")), raw=False)
    assert msgpack.ExtType(0, struct.pack(">II", 1_796_000_000, 123_456_000)) == time_
    assert "2026-11-30T00:53:20.123456Z" == body["timestamp"]
    assert ("warning", "app.x", "hello", "ann") == (
        body["level"],
        body["logger"],
        body["message"],
        body["user"],
    )


def test_a_formatter_makes_the_message_field() -> None:
    """With a formatter of its own the record map is {"message": formatted line}."""
    sink = FluentSink("127.0.0.1", 1)
    sink.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    _, body = msgpack.unpackb(sink.entry(record()), raw=False)
    assert {"message": "WARNING hello"} == body


@pytest.mark.parametrize("compress", [False, True])
def test_packed_forward_message(compress: bool) -> None:
    """[tag, bin of entries, {size, chunk, compressed}], gzip-compressed on request."""
    sink = FluentSink("127.0.0.1", 1, tag="t.x", compress="gzip" if compress else "none")
    entries = sink.entry(record("a")) + sink.entry(record("b"))
    tag, packed, option = msgpack.unpackb(sink.message(entries, 2, "Y2h1bms="), raw=False)
    assert "t.x" == tag
    assert isinstance(packed, bytes)
    assert {"size": 2, "chunk": "Y2h1bms=", **({"compressed": "gzip"} if compress else {})} == (
        option
    )
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(gzip.decompress(packed) if compress else packed)
    assert ["a", "b"] == [body["message"] for _, body in unpacker]


# ---------------------------------------------------------------------------- a silent peer


def forward_messages(data: bytes) -> list[list[Any]]:
    """The Forward messages in a byte stream."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)


def test_an_ack_that_never_comes_resends_the_same_chunk_then_counts_it_lost() -> None:
    """A peer that reads but never acks: the batch is resent (same chunk id) on a new
    connection after ack_timeout, and counted dropped once retry_timeout has passed."""
    with tcp_peer() as peer:
        sink = FluentSink.from_url(
            f"fluent://127.0.0.1:{peer.port}/t?ack_timeout=0.2&retry_timeout=0.7"
            "&backoff_initial=0.01&backoff_max=0.02"
        )

        async def drive() -> int:
            try:
                return await sink.write([record("unacked")])
            finally:
                await sink.aclose()

        lost = asyncio.run(drive())
        # The peer reads on its own thread: let the last resend arrive.
        assert peer.wait_for(lambda p: len(forward_messages(p.data)) >= p.connections, 5)
        sent = forward_messages(peer.data)
        connections = peer.connections
    stats = sink.sink_stats()
    assert (1, 1, 0) == (lost, stats["unacked"], stats["acks"])
    assert len(sent) >= 2  # the first attempt and at least one resend ...
    assert 1 == len({m[2]["chunk"] for m in sent})  # ... all under the same chunk id
    assert stats["resent"] == len(sent) - 1
    assert connections == len(sent)  # each resend on a new connection
    assert "not acknowledged" in stats["last_error"]
    assert "retry_timeout=0.7s" in stats["last_error"]


def test_without_acks_a_batch_counts_once_the_kernel_took_it() -> None:
    """require_ack=false: no chunk id, written at once, nothing read from the peer."""
    with tcp_peer() as peer:
        sink = FluentSink.from_url(f"fluent://127.0.0.1:{peer.port}/t?require_ack=false")
        with aiolog.configure([sink]) as pipeline:
            logging.getLogger("fire").warning("and forget")
            assert pipeline.flush(10)
            stats = pipeline.stats()["sinks"][sink.display_name]
        assert peer.wait_for_bytes(20)
        (message,) = forward_messages(peer.data)
    assert (1, 0, 0) == (stats["written"], stats["dropped"], stats["acks"])
    assert "chunk" not in message[2]
