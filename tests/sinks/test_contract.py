"""The contract every sink keeps with the listener, checked over every sink class.

Each sink writes to a real peer (a file, a TCP or HTTP server on loopback, a UDP socket, a
Unix datagram socket speaking journald's protocol, a Kafka-protocol broker, a stream): a
formatter failure loses that record only and is counted, ``write`` is never entered twice
at once, ``aclose`` may be called again, a forked child forgets the parent's resources
(and both keep writing), and the counters ``stats()`` documents are there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog import JSONFormatter, QueueHandler, QueueListener
from aiolog.sinks._adapter import HandlerSink
from aiolog.sinks.file import FileSink
from aiolog.sinks.fluent import FluentSink
from aiolog.sinks.http import HttpSink
from aiolog.sinks.journald import JournaldSink
from aiolog.sinks.otlp import OtlpSink
from aiolog.sinks.stream import StreamSink
from aiolog.sinks.syslog import SyslogSink
from aiolog.sinks.tcp import TcpSink
from aiolog.testing import CaptureSink
from tests.integration.fluent_peer import FluentPeer
from tests.integration.journald import datagram_peer
from tests.integration.peers import http_peer, tcp_peer

#: The keys of every sink's entry in ``stats()`` (docs/index.md, "Counters").
STATS_KEYS = {
    "offered",
    "written",
    "filtered",
    "dropped",
    "dropped_stalled",
    "dropped_error",
    "dropped_deadline",
    "buffered",
    "buffered_bytes",
    "stalled",
    "notices",
    "errors",
    "last_error",
}


@dataclasses.dataclass
class Case:
    """A sink writing to a real peer, and how to read what the peer got."""

    handler: logging.Handler
    received: Callable[[], str]
    #: The sink formats records with a logging.Formatter (OTLP encodes them itself).
    formats: bool = True
    #: What a forked child wrote can be read from this process (not for memory sinks).
    shared: bool = True

    def wait_for(self, *texts: str, timeout: float = 10.0) -> str:
        """What the peer got, once it holds every one of ``texts`` (or the timeout passed).

        A network peer reads on its own thread: what a sink handed to the kernel arrives a
        moment later.
        """
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if all(text in got for text in texts) or time.monotonic() > deadline:
                return got
            time.sleep(0.01)


class Picky(JSONFormatter):
    """A JSON formatter that fails on the record whose message is ``boom``."""

    def format(self, record: logging.LogRecord) -> str:
        if record.getMessage() == "boom":
            raise ValueError("cannot format boom")
        return super().format(record)


def udp_receiver(stack: contextlib.ExitStack) -> tuple[int, Callable[[], str]]:
    """A UDP socket on a free port; its reader returns every datagram that arrived."""
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    got: list[bytes] = []

    def received() -> str:
        with contextlib.suppress(TimeoutError, socket.timeout):
            while True:
                got.append(sock.recv(65536))
        return b"\n".join(got).decode("utf-8", "replace")

    return sock.getsockname()[1], received


def make_case(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> Case:
    """The sink of one kind, against its peer."""
    if kind == "stream":
        stream = io.StringIO()  # in this process's memory: a forked child has its own
        return Case(StreamSink(stream, format="json"), stream.getvalue, shared=False)
    if kind == "file":
        path = tmp_path / "out.jsonl"
        return Case(FileSink(path), lambda: path.read_text() if path.exists() else "")
    if kind in ("tcp", "syslog+tcp"):
        peer = stack.enter_context(tcp_peer())
        cls = TcpSink if kind == "tcp" else SyslogSink
        url = f"{kind}://127.0.0.1:{peer.port}"
        return Case(cls.from_url(url), lambda: peer.data.decode("utf-8", "replace"))
    if kind == "syslog+udp":
        port, received = udp_receiver(stack)
        return Case(SyslogSink.from_url(f"syslog+udp://127.0.0.1:{port}"), received)
    if kind in ("http", "otlp"):
        server = stack.enter_context(http_peer())

        def bodies() -> str:
            return "\n".join(r.body.decode("utf-8", "replace") for r in server.requests)

        if kind == "http":
            return Case(HttpSink.from_url(server.url()), bodies)
        sink = OtlpSink.from_url(f"otlp+http://127.0.0.1:{server.port}")
        return Case(sink, bodies, formats=False)
    if kind == "fluent":  # FluentServer under node; a formatter's line is the "message"
        fluent = FluentPeer(tmp_path / "fluent").start()
        stack.callback(fluent.stop)
        return Case(FluentSink.from_url(fluent.url()), fluent.text)
    if kind == "journald":  # a Unix datagram socket decoding journald's native protocol
        peer = stack.enter_context(datagram_peer(tmp_path / "journal.sock"))
        return Case(JournaldSink(peer.path), lambda: "\n".join(peer.messages()))
    if kind == "kafka":
        from aiolog.sinks.kafka import KafkaSink
        from tests.integration.engines import Tansu, read_topic

        broker = Tansu(tmp_path / "tansu")
        stack.callback(broker.stop)
        broker.start()

        def messages() -> str:
            got = read_topic(broker.bootstrap, "contract")
            return "\n".join(m.value().decode("utf-8", "replace") for m in got)

        return Case(KafkaSink.from_url(f"kafka://{broker.bootstrap}/contract"), messages)
    if kind == "capture":
        capture = CaptureSink()
        return Case(capture, lambda: "\n".join(capture.messages), formats=False, shared=False)
    assert "handler" == kind  # any logging.Handler, adapted by the listener
    out = tmp_path / "plain.log"
    plain = logging.FileHandler(out, delay=True)
    stack.callback(plain.close)
    return Case(plain, lambda: out.read_text() if out.exists() else "")


KINDS = [
    "stream",
    "file",
    "tcp",
    "syslog+tcp",
    "syslog+udp",
    "http",
    "otlp",
    "fluent",
    "journald",
    "kafka",
    "capture",
    "handler",
]


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """Each sink kind against its real peer, torn down afterwards."""
    with contextlib.ExitStack() as stack:
        made = make_case(request.param, tmp_path, stack)
        yield made
        made.handler.close()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test.contract")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def pipeline(logger: logging.Logger, sink: logging.Handler, **options: Any) -> QueueListener:
    """A started listener for ``sink`` behind a queue handler on ``logger``."""
    handler = QueueHandler()
    listener = QueueListener(handler.queue, sink, **options)
    handler.listener = listener
    logger.addHandler(handler)
    listener.start()
    return listener


def sink_name(listener: QueueListener) -> str:
    (name,) = listener.sink_stats()
    return name


def test_a_formatter_failure_loses_that_record_only_and_is_counted(
    case: Case, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counted as dropped_error with the error in last_error; nothing printed; others go."""
    if not case.formats:
        pytest.skip("this sink does not use a logging.Formatter")
    case.handler.setFormatter(Picky())
    listener = pipeline(logger, case.handler)
    logger.info("first")
    logger.info("boom")
    logger.info("last")
    assert listener.flush(10) is False  # one record was lost
    assert listener.stop(10) is False
    stats = listener.sink_stats()[sink_name(listener)]
    assert (3, 2, 1) == (stats["offered"], stats["written"], stats["dropped_error"])
    assert "ValueError: cannot format boom" in stats["last_error"]
    assert stats["errors"] >= 1
    text = case.wait_for("first", "last")
    assert "first" in text
    assert "last" in text
    # Only a loss notice may mention it (its last error names the failure).
    assert all("aiolog lost" in line for line in text.splitlines() if "boom" in line)
    assert "Traceback" not in capsys.readouterr().err


def test_write_is_never_entered_twice_at_once(
    case: Case, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener awaits each write before the next, whatever the sink does inside."""
    cls = type(case.handler) if isinstance(case.handler, aiolog.Sink) else HandlerSink
    original = cls.write
    inside = 0
    most = 0

    async def counting(self: Any, records: Any) -> Any:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            await asyncio.sleep(0)  # give a second write every chance to start
            return await original(self, records)
        finally:
            inside -= 1

    monkeypatch.setattr(cls, "write", counting)
    listener = pipeline(logger, case.handler, max_batch=64)
    for i in range(2000):
        logger.info("n=%d", i)
    assert listener.flush(30)
    assert listener.stop(10)
    assert 1 == most
    assert 2000 == listener.sink_stats()[sink_name(listener)]["written"]


def test_aclose_may_be_called_again(case: Case) -> None:
    """Closing twice (the listener stops, then stops again) raises nothing."""
    sink = aiolog_sink(case.handler)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "closing", None, None)
    record.message = "closing"

    async def drive() -> None:
        sink.open()
        await sink.write([record])
        await sink.aclose()
        await sink.aclose()

    asyncio.run(drive())
    sink.release()


def aiolog_sink(handler: logging.Handler) -> Any:
    """``handler`` as the listener drives it."""
    from aiolog._runner import adapt

    return adapt(handler)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_forgets_the_parents_resources(case: Case, logger: logging.Logger) -> None:
    """After fork the child writes through resources of its own; the parent's still work."""
    listener = pipeline(logger, case.handler)
    logger.info("parent before")
    assert listener.flush(10)
    pid = os.fork()
    if pid == 0:  # the child: a listener of its own, restarted by the at-fork hook
        code = 1
        try:
            logger.info("from the child")
            code = 0 if listener.flush(10) and listener.stop(10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    logger.info("parent after")
    assert listener.flush(10)
    assert listener.stop(10)
    expected = ["parent before", "parent after"] + (["from the child"] if case.shared else [])
    text = case.wait_for(*expected)
    for line in expected:
        assert line in text


def test_the_documented_counters_are_there(case: Case, logger: logging.Logger) -> None:
    """stats() has every documented key; the sink's own counters hold errors and last_error."""
    listener = pipeline(logger, case.handler)
    logger.info("counted")
    assert listener.flush(10)
    assert listener.stop(10)
    stats = listener.sink_stats()[sink_name(listener)]
    assert STATS_KEYS <= set(stats)
    own = aiolog_sink(case.handler).sink_stats()
    assert isinstance(own["errors"], int)
    assert "last_error" in own
    assert (1, 1, 0) == (stats["offered"], stats["written"], stats["buffered"])
