"""TcpSink: NDJSON lines over TCP/TLS, reconnection, stalled and vanishing peers, counters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest

import aiolog
from aiolog.sinks.tcp import TcpSink
from aiolog.testing import CaptureSink
from tests.helpers import LoopFactory, SignalsErrors, run
from tests.integration.peers import Certs, TcpPeer, make_certs, reserve_port, tcp_peer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with openssl, once for the module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def record(msg: str, level: int = logging.INFO, name: str = "app") -> logging.LogRecord:
    """A record as the listener hands it to sinks (message rendered)."""
    rec = logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, (), None)
    rec.message = rec.getMessage()
    return rec


class Probe(SignalsErrors, TcpSink):
    """A TcpSink that signals its errors (to sequence tests without sleeping)."""


def messages(peer: TcpPeer, logger: str | None = None) -> list[str]:
    """The ``message`` of every JSON line the peer received (from ``logger`` only, if given)."""
    lines = [json.loads(line) for line in peer.lines()]
    return [line["message"] for line in lines if logger is None or line["logger"] == logger]


async def write_all(sink: TcpSink, *batches: Sequence[str]) -> list[int]:
    """Write each batch, then close the sink; the lost count of each write."""
    lost = [await sink.write([record(m) for m in batch]) for batch in batches]
    await sink.aclose()
    return lost


# ---------------------------------------------------------------------------- configuration


def test_from_url_parses_host_port_and_options() -> None:
    """``tcp://host:port?...`` gives the endpoint, timeouts and level."""
    sink = TcpSink.from_url("tcp://127.0.0.1:5170?write_timeout=2&level=warning")
    assert ("127.0.0.1", 5170) == (sink.host, sink.port)
    assert 2.0 == sink.write_timeout
    assert logging.WARNING == sink.level
    assert sink.tls is None
    assert "tcp://127.0.0.1:5170?write_timeout=2&level=warning" == sink.url


def test_sink_url_factory_builds_tcp_and_tls_sinks(certs: Certs) -> None:
    """``aiolog.sink`` knows the tcp and tcp+tls schemes."""
    assert isinstance(aiolog.sink("tcp://127.0.0.1:1"), TcpSink)
    tls = aiolog.sink(f"tcp+tls://localhost:1?ca={certs.ca}")
    assert isinstance(tls, TcpSink)
    assert tls.tls is not None


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("tcp://127.0.0.1:99999", "bad port='99999'"),
        ("tcp://127.0.0.1", "bad port='': expected a port in the URL"),
        ("tcp://127.0.0.1:1?colour=red", "unknown option 'colour'"),
        ("tcp://127.0.0.1:1?ca=/etc/hosts", "unknown option 'ca'"),
        ("tcp+tls://127.0.0.1:1?ca=/nonexistent/ca.pem", "bad ca='/nonexistent/ca.pem'"),
        ("tcp://127.0.0.1:1?write_timeout=-1", "bad write_timeout"),
        ("tcp://127.0.0.1:1?format=xml", "bad format='xml'"),
        ("tcp://127.0.0.1:1?level=loud", "bad level='loud'"),
    ],
)
def test_bad_urls_fail_at_construction(url: str, match: str) -> None:
    """Every mistake in a URL is a ValueError when the sink is built, naming the culprit."""
    with pytest.raises(ValueError, match=match):
        TcpSink.from_url(url)


def test_secrets_in_the_url_are_redacted(certs: Certs) -> None:
    """A password or key-looking option never reaches ``url``, ``repr`` or errors."""
    sink = TcpSink.from_url(
        f"tcp+tls://user:pw@localhost:1?ca={certs.ca}&cert={certs.client_cert}"
        f"&key={certs.client_key}"
    )
    assert "pw" not in sink.url.replace("pw@", "") or ":***@" in sink.url
    assert ":***@" in sink.url
    assert str(certs.client_key) not in sink.url
    assert "key=***" in sink.url
    assert "***" in repr(sink)


# ---------------------------------------------------------------------------- framing


def test_frame_is_one_json_line() -> None:
    """Each record is one JSON object and a newline, UTF-8."""
    sink = TcpSink("127.0.0.1", 1)
    frame = sink.frame(record("héllo ☃"))
    assert frame.endswith(b"\n")
    assert 1 == frame.count(b"\n")
    assert "héllo ☃" == json.loads(frame.decode("utf-8"))["message"]


def test_frame_escapes_newlines_of_multiline_formats() -> None:
    """A text formatter's multi-line output stays one line on the wire."""
    sink = TcpSink("127.0.0.1", 1)
    sink.setFormatter(logging.Formatter("%(message)s"))
    assert b"a\\nb\\r\n" == sink.frame(record("a\nb\r"))


# ---------------------------------------------------------------------------- delivery


def test_write_delivers_lines_in_order(loop_factory: LoopFactory) -> None:
    """Records arrive as JSON lines in the order written, over one connection."""
    with tcp_peer() as peer:
        sink = TcpSink("127.0.0.1", peer.port)
        batches = [[f"a{i}" for i in range(100)], [f"b{i}" for i in range(3)]]
        assert [0, 0] == run(write_all(sink, *batches), loop_factory)
        assert peer.wait_for(lambda p: len(p.lines()) >= 103)
        assert [*batches[0], *batches[1]] == messages(peer)
        assert 1 == peer.connections
        assert 1 == sink.connects


def test_a_large_batch_goes_out_in_chunks_and_arrives_whole() -> None:
    """A batch larger than a chunk is written piecewise; every line arrives once."""
    with tcp_peer() as peer:
        sink = TcpSink("127.0.0.1", peer.port)
        batch = [f"{i:05d}" + "x" * 2000 for i in range(500)]  # about 1 MB
        assert [0] == run(write_all(sink, batch))
        assert peer.wait_for(lambda p: len(p.lines()) >= 500)
        assert batch == messages(peer)


def test_peer_down_at_start_then_up_gets_the_batch_after_reconnecting() -> None:
    """A refused connect is retried with backoff; the held batch is delivered, not lost."""
    peer = TcpPeer(sock=reserve_port())
    try:
        sink = Probe("127.0.0.1", peer.port, backoff_initial=0.01, backoff_max=0.05)

        async def main() -> int:
            task = asyncio.ensure_future(sink.write([record("held")]))
            await asyncio.get_running_loop().run_in_executor(None, sink.failed.wait, 10)
            peer.listen()
            lost = await task
            await sink.aclose()
            return lost

        assert 0 == run(main)
        assert peer.wait_for(lambda p: len(p.lines()) >= 1)
        assert ["held"] == messages(peer)
        assert sink.last_error is not None
        assert sink.last_error.startswith("ConnectionRefusedError")
        assert sink.retries >= 1
        assert 1 == sink.connects
    finally:
        peer.close()


def test_peer_that_closed_between_batches_is_reconnected_before_writing() -> None:
    """A connection the peer closed is noticed before the next write: nothing is lost."""
    with tcp_peer() as peer:
        sink = TcpSink("127.0.0.1", peer.port, backoff_initial=0.01)

        async def main() -> list[int]:
            lost = [await sink.write([record("one")])]
            assert peer.wait_for(lambda p: len(p.lines()) >= 1)
            peer.drop_clients()
            assert sink._reader is not None
            await asyncio.wait_for(sink._reader.read(), 5)  # the peer's close is seen
            lost.append(await sink.write([record("two")]))
            await sink.aclose()
            return lost

        assert [0, 0] == run(main)
        assert peer.wait_for(lambda p: len(p.lines()) >= 2)
        assert ["one", "two"] == messages(peer)
        assert 2 == sink.connects
        assert sink.last_error is not None
        assert "closed the connection" in sink.last_error


def test_stalled_peer_times_out_and_the_chunk_is_counted_lost(loop_factory: LoopFactory) -> None:
    """A peer that never reads: the write gives up after write_timeout and reports the loss."""
    with tcp_peer(stall=True) as peer:
        sink = TcpSink("127.0.0.1", peer.port, write_timeout=0.2, backoff_initial=0.01)
        batch = [f"{i:05d}" + "x" * 8000 for i in range(2000)]  # 16 MB: beyond any buffer

        async def main() -> int:
            lost = await sink.write([record(m) for m in batch])
            await sink.aclose()
            return lost

        lost = run(main, loop_factory)
        assert 0 < lost <= len(batch)
        assert sink.last_error is not None
        assert "accepted no data for 0.2s" in sink.last_error
        assert sink.connects >= 2  # dropped and made again for the next chunks


def test_tls_delivers_to_a_peer_with_a_trusted_certificate(
    certs: Certs, loop_factory: LoopFactory
) -> None:
    """tcp+tls verifies the peer against ``ca`` and delivers over TLS."""
    with tcp_peer(ssl_context=certs.server_context()) as peer:
        sink = TcpSink.from_url(f"tcp+tls://127.0.0.1:{peer.port}?ca={certs.ca}")
        assert [0] == run(write_all(sink, ["secret stuff"] * 300), loop_factory)
        assert peer.wait_for(lambda p: len(p.lines()) >= 300)
        assert ["secret stuff"] * 300 == messages(peer)


def test_tls_presents_a_client_certificate(certs: Certs) -> None:
    """``cert``/``key`` satisfy a peer that requires client certificates."""
    context = certs.server_context(require_client_cert=True)
    with tcp_peer(ssl_context=context) as peer:
        sink = TcpSink.from_url(
            f"tcp+tls://localhost:{peer.port}?ca={certs.ca}"
            f"&cert={certs.client_cert}&key={certs.client_key}"
        )
        assert [0] == run(write_all(sink, ["mutual"]))
        assert peer.wait_for(lambda p: len(p.lines()) >= 1)


def test_tls_refuses_an_untrusted_certificate_and_never_downgrades(certs: Certs) -> None:
    """An unverifiable peer is never written to; last_error says why."""
    with tcp_peer(ssl_context=certs.server_context()) as peer:
        sink = Probe.from_url(
            f"tcp+tls://127.0.0.1:{peer.port}?ca={certs.other_ca}&backoff_initial=0.01"
        )
        assert isinstance(sink, Probe)

        async def main() -> None:
            task = asyncio.ensure_future(sink.write([record("must not leak")]))
            await asyncio.get_running_loop().run_in_executor(None, sink.failed.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main)
        assert sink.last_error is not None
        assert sink.last_error.startswith("SSLCertVerificationError")
        assert "certificate verify failed" in sink.last_error
        assert 0 == sink.connects
        assert b"" == peer.data


def test_tls_checks_the_host_name(certs: Certs) -> None:
    """A certificate for other names is refused; server_hostname= can name the right one."""
    with tcp_peer(ssl_context=certs.server_context()) as peer:
        wrong = Probe.from_url(
            f"tcp+tls://127.0.0.1:{peer.port}?ca={certs.ca}&server_hostname=example.org"
            "&backoff_initial=0.01"
        )

        async def main() -> None:
            task = asyncio.ensure_future(wrong.write([record("x")]))
            await asyncio.get_running_loop().run_in_executor(None, wrong.failed.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main)
        assert wrong.last_error is not None
        assert "example.org" in wrong.last_error
        right = TcpSink.from_url(
            f"tcp+tls://127.0.0.1:{peer.port}?ca={certs.ca}&server_hostname=localhost"
        )
        assert [0] == run(write_all(right, ["named"]))


def test_write_after_aclose_reconnects() -> None:
    """``aclose`` releases the connection; a later write opens a new one."""
    with tcp_peer() as peer:
        sink = TcpSink("127.0.0.1", peer.port)
        assert [0] == run(write_all(sink, ["first"]))
        assert [0] == run(write_all(sink, ["second"]))
        assert peer.wait_for(lambda p: len(p.lines()) >= 2)
        assert 2 == sink.connects


def test_after_fork_forgets_the_connection_without_closing_it() -> None:
    """A forked child must not touch the parent's socket."""
    with tcp_peer() as peer:
        sink = TcpSink("127.0.0.1", peer.port)

        async def main() -> None:
            await sink.write([record("x")])
            writer = sink._writer
            sink.after_fork()
            assert sink._writer is None
            assert writer is not None
            assert not writer.is_closing()
            writer.close()
            await writer.wait_closed()

        run(main)


# ---------------------------------------------------------------------------- via configure


def test_configure_delivers_through_the_pipeline() -> None:
    """``configure(["tcp://..."])`` + ``flush()``: every record arrives, stats agree."""
    with (
        tcp_peer() as peer,
        aiolog.configure([f"tcp://127.0.0.1:{peer.port}"], level="DEBUG") as pipeline,
    ):
        log = logging.getLogger("app.tcp")
        for i in range(200):
            log.info("record %d", i)
        assert pipeline.flush(10)
        stats = pipeline.stats()["sinks"][f"tcp://127.0.0.1:{peer.port}"]
        # Other threads' libraries may log at DEBUG meanwhile (asyncio: "Using selector").
        assert peer.wait_for(lambda p: len(p.lines()) >= stats["written"])
        assert [f"record {i}" for i in range(200)] == messages(peer, "app.tcp")
        assert stats["written"] == len(peer.lines())
        assert 0 == stats["dropped"]


def test_configure_survives_a_peer_that_is_down_at_start() -> None:
    """configure() does not fail when the peer is down; records follow once it is up."""
    peer = TcpPeer(sock=reserve_port())
    try:
        sink = Probe("127.0.0.1", peer.port, backoff_initial=0.01, backoff_max=0.05)
        with aiolog.configure([sink]) as pipeline:
            logging.getLogger("app").warning("before the peer")
            assert sink.failed.wait(10)
            peer.listen()
            logging.getLogger("app").warning("after the peer")
            assert pipeline.flush(10)
            assert peer.wait_for(lambda p: len(p.lines()) >= 2)
            assert ["before the peer", "after the peer"] == messages(peer)
            stats = pipeline.stats()["sinks"][sink.display_name]
            assert (2, 0) == (stats["written"], stats["dropped"])
    finally:
        peer.close()


def test_stalled_peer_costs_the_app_nothing_and_its_drops_are_counted_exactly() -> None:
    """A peer that never reads: logging stays non-blocking, the other sink gets everything,
    and every record of the stalled sink is counted written or dropped."""
    with tcp_peer(stall=True) as peer:
        stalled = TcpSink("127.0.0.1", peer.port, write_timeout=0.2, backoff_initial=0.01)
        capture = CaptureSink()
        total = 1500
        pipeline = aiolog.configure([stalled, capture], queue_size=total * 2)
        log = logging.getLogger("app.stall")
        ticks = 0

        async def app() -> None:
            nonlocal ticks
            payload = "y" * 10_000
            for i in range(total):
                log.info("%d %s", i, payload)
                if i % 100 == 0:
                    await asyncio.sleep(0)
                    ticks += 1

        asyncio.run(app())
        assert total // 100 == ticks
        assert pipeline.flush(30) is False  # the stalled sink lost records
        # The listener's own "aiolog lost records" notices go to every sink too.
        notices = sum(r.name == "aiolog" for r in capture.records)
        assert total == len(capture.records) - notices
        stats = pipeline.stats()
        assert 0 == stats["queue"]["dropped"]
        tcp = stats["sinks"][stalled.display_name]
        assert total == tcp["offered"]
        assert total == tcp["written"] + tcp["dropped"] + tcp["buffered"]
        assert tcp["dropped"] > 0
        assert stalled.errors >= 1
        pipeline.stop(timeout=1)  # before the peer goes: no reconnect while it closes
