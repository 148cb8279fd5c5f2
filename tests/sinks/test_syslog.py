"""SyslogSink encoding (RFC 5424 header, structured data, MSG) and framing, with fakes."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import socket
import sys

import pytest

import aiolog
from aiolog.sinks.syslog import SyslogSink, severity
from tests.helpers import run
from tests.integration.peers import tcp_peer

pytestmark = pytest.mark.timeout(30)

HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) "
    r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<rest>.*)",
    re.DOTALL,
)


def record(
    msg: str = "hello", level: int = logging.INFO, name: str = "app.db", **extra: object
) -> logging.LogRecord:
    """A record as the listener hands it to sinks (message rendered)."""
    rec = logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, (), None, extra=extra)
    rec.message = rec.getMessage()
    return rec


def parse(sink: SyslogSink, rec: logging.LogRecord) -> re.Match[str]:
    """The sink's message for ``rec``, parsed into header fields."""
    match = HEADER.fullmatch(sink.message(rec).decode("utf-8"))
    assert match is not None
    return match


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("url", "transport", "port"),
    [
        ("syslog+udp://127.0.0.1", "udp", 514),
        ("syslog+tcp://127.0.0.1", "tcp", 514),
        ("syslog+tls://localhost", "tls", 6514),
        ("syslog+tcp://127.0.0.1:1514", "tcp", 1514),
    ],
)
def test_urls_choose_transport_and_default_port(url: str, transport: str, port: int) -> None:
    """The scheme picks the transport; the default ports are 514 and 6514 (TLS)."""
    sink = aiolog.sink(url)
    assert isinstance(sink, SyslogSink)
    assert (transport, port) == (sink.transport, sink.port)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("syslog+tcp://host:99999", "bad port='99999'"),
        ("syslog+udp://127.0.0.1?facility=local9", "bad facility='local9'"),
        ("syslog+udp://127.0.0.1?facility=24", "bad facility='24'"),
        ("syslog+udp://127.0.0.1?fasility=local0", "unknown option 'fasility'"),
        ("syslog+udp://127.0.0.1?ca=/etc/hosts", "unknown option 'ca'"),
        ("syslog+udp://127.0.0.1?framing=lf", "framing only over TCP and TLS"),
        ("syslog+tcp://127.0.0.1?framing=nul", "bad framing='nul'"),
        ("syslog+udp://127.0.0.1?max_size=100", "bad max_size='100'"),
        ("syslog+udp://127.0.0.1?max_size=70000", "bad max_size='70000'"),
        ("syslog+tls://127.0.0.1?ca=/nonexistent.pem", "bad ca='/nonexistent.pem'"),
        ("syslog+udp://127.0.0.1?bom=maybe", "bad bom='maybe'"),
        ("syslog+sctp://127.0.0.1", "bad scheme='syslog\\+sctp'"),
    ],
)
def test_bad_settings_fail_at_construction(url: str, match: str) -> None:
    """Every mistake is a ValueError when the sink is built, naming the culprit."""
    with pytest.raises(ValueError, match=match):
        aiolog.sink(url)


@pytest.mark.parametrize(("facility", "number"), [("local0", 16), ("LOCAL7", 23), ("3", 3), (0, 0)])
def test_facility_by_name_or_number(facility: object, number: int) -> None:
    """Facilities are names (any case) or numbers 0-23."""
    assert number == SyslogSink("h", facility=facility).facility  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- PRI and header


@pytest.mark.parametrize(
    ("level", "expected"),
    [(5, 7), (10, 7), (15, 7), (20, 6), (25, 6), (30, 4), (35, 4), (40, 3), (50, 2), (60, 2)],
)
def test_severity_is_that_of_the_nearest_standard_level_below(level: int, expected: int) -> None:
    """DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2; custom levels round down."""
    assert expected == severity(level)


def test_pri_combines_facility_and_severity() -> None:
    """PRI = facility * 8 + severity: local0 + INFO is 134, user + ERROR is 11."""
    assert "134" == parse(SyslogSink("h", facility="local0"), record())["pri"]
    assert "11" == parse(SyslogSink("h"), record(level=logging.ERROR))["pri"]


def test_header_fields_follow_the_record() -> None:
    """Timestamp in UTC with microseconds, hostname, app name, pid and logger as MSGID."""
    rec = record()
    rec.created = 1764019522.123456
    match = parse(SyslogSink("h", app_name="billing", hostname="web-1"), rec)
    assert "2025-11-24T21:25:22.123456Z" == match["time"]
    assert ("web-1", "billing") == (match["host"], match["app"])
    assert str(rec.process) == match["procid"]
    assert "app.db" == match["msgid"]


def test_header_fields_are_cut_to_the_rfc_limits_and_made_printable() -> None:
    """APP-NAME 48, MSGID 32, HOSTNAME 255; spaces and non-ASCII become '_'."""
    sink = SyslogSink("h", app_name="my app " + "a" * 60, hostname="h" * 300)
    match = parse(sink, record(name="élan vital." + "x" * 40))
    assert "my_app_" + "a" * 41 == match["app"]
    assert 255 == len(match["host"])
    assert "_lan_vital." + "x" * 21 == match["msgid"]


def test_app_name_defaults_to_the_program_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without app_name the basename of sys.argv[0] is used ("python" for -c)."""
    monkeypatch.setattr(sys, "argv", ["/srv/app/worker.py", "--x"])
    assert "worker.py" == SyslogSink("h").app_name
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert "python" == SyslogSink("h").app_name


# ---------------------------------------------------------------------------- SD and MSG


def test_structured_data_carries_the_asyncio_origin_escaped() -> None:
    """Task, coroutine and callback go into aiolog@32473 with '"', '\\' and ']' escaped."""
    rec = record()
    rec.taskName = 'fetch "a\\b" [1]'
    rec.aiolog_coro = "Client.fetch"
    rec.aiolog_callback = None
    rest = parse(SyslogSink("h"), rec)["rest"]
    assert rest.startswith(
        '[aiolog@32473 logger="app.db" task="fetch \\"a\\\\b\\" [1\\]" coro="Client.fetch"] '
    )


def test_extra_fields_and_context_variables_go_into_their_own_element() -> None:
    """extra= values (non-strings as JSON) and context variables form extra@32473."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    context = contextvars.copy_context()  # set in a copy: the test's own context stays clean
    context.run(var.set, "r-1")
    rec = record(user="ann", ids=[1, 2], **{"bad name=": "x"})
    rec.aiolog_context = context
    rest = parse(SyslogSink("h"), rec)["rest"]
    assert '[extra@32473 request_id="r-1" user="ann" ids="[1,2\\]" bad_name_="x"] hello' in rest


def test_msg_is_the_message_then_the_traceback() -> None:
    """The default MSG is the message, with the traceback on the following lines."""
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.getLogger("t").makeRecord("t", 40, __file__, 1, "failed", (), sys.exc_info())
    rec.message = "failed"
    rest = parse(SyslogSink("h"), rec)["rest"]
    body = rest.split("] ", 1)[1]
    assert body.startswith("failed\nTraceback (most recent call last):")
    assert body.endswith("ValueError: boom")


def test_format_json_puts_a_json_line_in_msg() -> None:
    """``format=json`` makes MSG the JSON formatter's line."""
    rest = parse(SyslogSink("h", format="json"), record("hi"))["rest"]
    assert '"message":"hi"' in rest.split("] ", 1)[1]


def test_bom_precedes_msg_only_when_asked() -> None:
    """``bom=true`` writes the UTF-8 BOM before MSG (off by default)."""
    assert b"\xef\xbb\xbf" not in SyslogSink("h").message(record("é"))
    assert SyslogSink("h", bom=True).message(record("é")).endswith(b"] \xef\xbb\xbf\xc3\xa9")


# ---------------------------------------------------------------------------- framing


def test_octet_counting_counts_bytes_not_characters() -> None:
    """TCP frames are ``LEN SP MSG`` with LEN in bytes of UTF-8."""
    sink = SyslogSink("h", transport="tcp")
    rec = record("☃\nsecond line")
    message = sink.message(rec)
    assert b"%d %s" % (len(message), message) == sink.frame(rec)


def test_lf_framing_escapes_inner_newlines() -> None:
    """With framing=lf a message is one line: inner newlines become #012."""
    sink = SyslogSink("h", transport="tcp", framing="lf")
    frame = sink.frame(record("one\ntwo"))
    assert frame.endswith(b"] one#012two\n")
    assert 1 == frame.count(b"\n")


def test_udp_messages_are_cut_to_max_size_without_splitting_a_character() -> None:
    """A long message is cut to max_size bytes, never inside a UTF-8 sequence."""
    sink = SyslogSink("h", max_size=500)
    for pad in range(4):
        data = sink.message(record("x" * pad + "€" * 400))
        assert len(data) <= 500
        assert len(data) >= 497
        data.decode("utf-8")  # still valid UTF-8


def test_tcp_messages_are_not_cut_unless_asked() -> None:
    """Over TCP the whole message is sent; max_size cuts when given."""
    assert len(SyslogSink("h", transport="tcp").message(record("x" * 5000))) > 5000
    assert 1000 == len(SyslogSink("h", transport="tcp", max_size=1000).message(record("x" * 5000)))


# ---------------------------------------------------------------------------- sending


def test_udp_sends_one_datagram_per_record() -> None:
    """Each record is one datagram to the receiver."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        sink = SyslogSink("127.0.0.1", receiver.getsockname()[1], app_name="unit")

        async def main() -> int:
            lost = await sink.write([record("one"), record("two\nlines")])
            await sink.aclose()
            return lost

        assert 0 == run(main)
        first, second = receiver.recv(4096), receiver.recv(4096)
        assert first.endswith(b"] one")
        assert second.endswith(b"] two\nlines")
        assert 1 == sink.connects


def test_udp_to_a_closed_port_reports_the_error_not_a_loss() -> None:
    """ICMP port unreachable is counted as an error; UDP cannot say which record was lost."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]

    class Probe(SyslogSink):
        def note_error(self, error: BaseException | str) -> None:
            super().note_error(error)
            failed.set()

    failed = asyncio.Event()
    sink = Probe("127.0.0.1", port)

    async def main() -> list[int]:
        lost = [await sink.write([record("a")])]
        await asyncio.wait_for(failed.wait(), 5)
        lost.append(await sink.write([record("b")]))
        await sink.aclose()
        return lost

    assert [0, 0] == run(main)
    assert sink.last_error is not None
    assert sink.last_error.startswith("ConnectionRefusedError")


def test_tcp_sends_octet_counted_frames() -> None:
    """Over TCP the peer receives the frames back to back, in order."""
    with tcp_peer() as peer:
        sink = SyslogSink("127.0.0.1", peer.port, transport="tcp")
        records = [record("one"), record("two\nlines")]
        expected = b"".join(sink.frame(r) for r in records)

        async def main() -> int:
            lost = await sink.write(records)
            await sink.aclose()
            return lost

        assert 0 == run(main)
        assert peer.wait_for_bytes(len(expected))
        data = peer.data
        assert len(expected) == len(data)
        assert re.fullmatch(rb"\d+ <14>1 .*] one\d+ <14>1 .*] two\nlines", data, re.DOTALL)
