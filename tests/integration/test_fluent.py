"""FluentSink against a real Forward receiver, the Fluent organisation's FluentServer (node).

Content (10 000 records exactly once, with acks, plain and gzip-compressed), a receiver
killed after taking a batch but before acking it (resent with the same chunk id; gone for
good: counted), down at start, the shared-key handshake (right and wrong key, users), and
TLS (trusted and untrusted certificate).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog.sinks.fluent import FluentSink
from aiolog.testing import CaptureSink
from tests.helpers import LoopFactory, SignalsErrors, run
from tests.integration.fluent_peer import FluentPeer
from tests.integration.peers import Certs, make_certs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

N = 10_000
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Probe(SignalsErrors, FluentSink):
    """A FluentSink that signals its errors (to sequence tests without sleeping)."""


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[FluentPeer]:
    """A FluentServer without a shared key (not started yet)."""
    server = FluentPeer(tmp_path / "fluent")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with openssl, once for the module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def log_numbered(count: int, logger: str = "app.fluent", start: int = 0) -> None:
    """Log ``count`` records ``n=0``... (in that order) from four asyncio tasks, each with
    its own value of a context variable."""
    log = logging.getLogger(logger)
    counter = iter(range(start, start + count))

    async def worker(part: int) -> None:
        request_id.set(f"req-{part}")
        for i in range(count // 4):
            n = next(counter)  # the order of the calls, whichever task makes them
            log.warning("n=%d", n, extra={"n": n, "part": part})
            if i % 100 == 99:
                await asyncio.sleep(0)  # interleave the tasks

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(worker(p), name=f"w{p}") for p in range(4)))

    asyncio.run(main())


def numbers(entries: list[dict[str, Any]]) -> list[int]:
    return [e["record"]["n"] for e in entries if "n" in e["record"]]


def sink_stats(pipeline: aiolog.Pipeline, sink: aiolog.Sink) -> dict[str, Any]:
    stats: dict[str, Any] = pipeline.stats()["sinks"][sink.display_name]
    return stats


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_records_arrive_exactly_once_with_acks(peer: FluentPeer, compress: str) -> None:
    """10 000 records arrive once each, fields intact, each batch acked under its chunk id."""
    peer.start()
    sink = FluentSink.from_url(peer.url("app.orders", compress=compress))
    with aiolog.configure([sink], level=logging.INFO) as pipeline:
        before = time.time()
        log_numbered(N)
        assert pipeline.flush(30)
        stats = sink_stats(pipeline, sink)
    entries = peer.wait_for(lambda got: len(got) >= N)
    assert N == len(entries)
    assert list(range(N)) == sorted(numbers(entries))
    assert (N, 0, 0) == (stats["written"], stats["dropped"], stats["resent"])
    chunks = collections.Counter(e["chunk"] for e in entries)
    assert stats["acks"] == len(chunks)
    assert None not in chunks
    assert {"app.orders"} == {e["tag"] for e in entries}
    by_n = {e["record"]["n"]: e for e in entries}
    first = by_n[0]
    record = first["record"]
    assert "warning" == record["level"]
    assert "app.fluent" == record["logger"]
    assert "n=0" == record["message"]
    assert "w0" == record["task"]
    assert "log_numbered.<locals>.worker" == record["coro"]
    assert {"request_id": "req-0"} == record["context"]
    assert list(range(N)) == numbers(entries)  # in the order they were logged
    assert {"w0", "w1", "w2", "w3"} == {e["record"]["task"] for e in entries}
    for e in entries:
        part = e["record"]["part"]
        assert (f"w{part}", f"req-{part}") == (
            e["record"]["task"],
            e["record"]["context"]["request_id"],
        )
    # EventTime: seconds and nanoseconds, matching the record's own timestamp.
    epoch, nano = first["time"]["epoch"], first["time"]["nano"]
    assert before - 1 <= epoch <= time.time()
    assert 0 <= nano < 1_000_000_000
    assert record["timestamp"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)))
    assert f".{nano // 1000:06d}Z" in record["timestamp"]


def test_exception_and_extra_types_arrive_as_a_map(peer: FluentPeer) -> None:
    """A traceback arrives structured; values msgpack or the receiver cannot take (a set,
    a big int, a map with tuple keys) as text."""
    peer.start()
    with aiolog.configure([peer.url()]) as pipeline:
        try:
            raise KeyError("missing ☃")
        except KeyError:
            logging.getLogger("exc").exception(
                "failed", extra={"s": {1}, "big": 1 << 70, "keys": {1: "a", (2, 3): "b"}}
            )
        assert pipeline.flush(10)
    (entry,) = peer.wait_for(lambda got: len(got) >= 1)
    record = entry["record"]
    assert "KeyError" == record["exception"]["type"]
    assert "Traceback (most recent call last)" in record["exception"]["traceback"]
    assert "{1}" == record["s"]
    assert str(1 << 70) == record["big"]
    assert {"1": "a", "(2, 3)": "b"} == record["keys"]  # keys a receiver can decode


def test_peer_killed_before_its_ack_gets_the_batch_again_under_the_same_chunk(
    peer: FluentPeer,
) -> None:
    """The receiver takes a batch and dies before acking it: after it restarts the batch
    is sent again with the same chunk id; nothing is lost and the copies dedupe by chunk."""
    peer.start(die_after=3000)
    sink = FluentSink.from_url(peer.url(backoff_max="0.2"))
    with aiolog.configure([sink], level=logging.INFO) as pipeline:
        log_numbered(N)
        assert peer.wait_exit(30)  # it died on the batch that took it past 3000 entries
        peer.start()
        assert pipeline.flush(30)
        stats = sink_stats(pipeline, sink)
    entries = peer.entries()
    assert (N, 0) == (stats["written"], stats["dropped"])
    counts = collections.Counter(numbers(entries))
    assert set(range(N)) == set(counts)
    duplicates = [n for n, seen in counts.items() if seen > 1]
    assert duplicates  # the batch it took before dying arrived twice ...
    assert len(duplicates) == stats["resent"]  # ... and the sink says how many it resent
    assert {2} == {counts[n] for n in duplicates}
    # Every copy came under the same chunk id: deduplicating by chunk leaves each record once.
    chunk_of: dict[int, set[str]] = collections.defaultdict(set)
    for e in entries:
        chunk_of[e["record"]["n"]].add(e["chunk"])
    assert all(1 == len(chunk_of[n]) for n in duplicates)
    first_delivery: dict[str, str] = {}  # what a receiver deduplicating by chunk keeps
    deduped = []
    for e in entries:
        if first_delivery.setdefault(e["chunk"], e["delivery"]) == e["delivery"]:
            deduped.append(e["record"]["n"])
    assert list(range(N)) == sorted(deduped)
    assert 2 == stats["connects"]
    assert stats["acks"] == len(first_delivery)


def test_peer_killed_from_outside_mid_stream_and_restarted(peer: FluentPeer) -> None:
    """SIGKILL at whatever moment the stream is in: after the restart every record is
    there, any copy shares its chunk id with the original, and the sink counted them."""
    peer.start()
    sink = FluentSink.from_url(peer.url(backoff_max="0.2"))
    with aiolog.configure([sink], level=logging.INFO) as pipeline:
        log_numbered(N // 2)
        peer.wait_for(lambda got: len(got) >= 2000)
        peer.kill()  # maybe mid-batch, maybe between two
        log_numbered(N // 2, start=N // 2)  # these need the new connection in any case
        peer.start()
        assert pipeline.flush(30)
        stats = sink_stats(pipeline, sink)
    entries = peer.entries()
    assert (N, 0) == (stats["written"], stats["dropped"])
    counts = collections.Counter(numbers(entries))
    assert set(range(N)) == set(counts)
    chunks: dict[int, set[str]] = collections.defaultdict(set)
    for e in entries:
        chunks[e["record"]["n"]].add(e["chunk"])
    assert all(1 == len(ids) for ids in chunks.values())
    assert sum(counts.values()) - N <= stats["resent"]
    assert 2 == stats["connects"]


def test_peer_gone_for_good_counts_the_unacked_batch_lost(peer: FluentPeer) -> None:
    """The receiver dies before acking and never comes back: what was acked arrived, the
    unacked batch is counted dropped (it did arrive), the rest too: exact accounting."""
    peer.start(die_after=3000)
    sink = Probe.from_url(peer.url(backoff_max="0.2", retry_timeout="1"))
    pipeline = aiolog.configure([sink], level=logging.INFO, stall_timeout=1)
    log_numbered(N)
    assert peer.wait_exit(30)
    assert sink.failed.wait(10)
    deadline = time.monotonic() + 20
    while sink.unacked == 0 and time.monotonic() < deadline:  # retry_timeout runs out
        time.sleep(0.02)
    assert not pipeline.stop(timeout=2)
    stats = sink_stats(pipeline, sink)
    entries = peer.entries()
    got = numbers(entries)
    assert len(got) == len(set(got))  # nothing was resent to a dead peer
    written = stats["written"]
    assert N == written + stats["dropped"]
    assert list(range(written)) == sorted(got)[:written]  # acked: never lost (in order)
    assert len(got) - written == stats["unacked"] > 0  # arrived unacked: counted lost
    assert stats["dropped_error"] >= stats["unacked"]
    assert "not acknowledged" in stats["last_error"]


def test_peer_down_at_start_then_up(peer: FluentPeer) -> None:
    """configure() with the receiver down works; what was logged arrives once it is up."""
    sink = Probe.from_url(peer.url(backoff_max="0.2"))
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("late").warning("while down")
        assert sink.failed.wait(10)
        peer.start()
        logging.getLogger("late").warning("after start")
        assert pipeline.flush(15)
        stats = sink_stats(pipeline, sink)
    assert ["while down", "after start"] == [e["record"]["message"] for e in peer.entries()]
    assert (2, 0) == (stats["written"], stats["dropped"])
    assert stats["last_error"].startswith("ConnectionRefusedError")


# ---------------------------------------------------------------------------- shared key


@pytest.fixture
def keyed_peer(tmp_path: Path) -> Iterator[FluentPeer]:
    """A FluentServer with shared key ``s3cret`` and user ``ann``/``pw`` (started)."""
    server = FluentPeer(tmp_path / "keyed", shared_key="s3cret", user="ann:pw")
    try:
        yield server.start()
    finally:
        server.stop()


def test_shared_key_and_user_handshake(keyed_peer: FluentPeer) -> None:
    """With the right key, user and password the handshake passes and records arrive."""
    url = keyed_peer.url(shared_key="s3cret", hostname="client-1").replace("//", "//ann:pw@", 1)
    sink = FluentSink.from_url(url)
    assert "pw" not in sink.url
    assert "s3cret" not in sink.url
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("keyed").warning("authenticated")
        assert pipeline.flush(10)
        stats = sink_stats(pipeline, sink)
    assert ["authenticated"] == [e["record"]["message"] for e in keyed_peer.entries()]
    assert (1, 0, 0) == (stats["written"], stats["dropped"], stats["errors"])


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ("shared_key=wrong&username=ann&password=pw", "shared key mismatch"),
        ("shared_key=s3cret&username=ann&password=nope", "username/password mismatch"),
    ],
)
def test_a_refused_handshake_is_a_clear_error_and_a_notice(
    keyed_peer: FluentPeer, credentials: str, reason: str
) -> None:
    """A wrong key or password: nothing delivered, the batch counted dropped, last_error
    says why, the other sinks get a loss notice naming it, and no secret appears."""
    sink = Probe.from_url(f"{keyed_peer.url()}?{credentials}&backoff_max=0.2")
    other = CaptureSink()
    pipeline = aiolog.configure([sink, other])
    logging.getLogger("keyed").warning("refused 1")
    assert sink.failed.wait(10)
    assert pipeline.flush(10) is False  # the batch was lost
    logging.getLogger("keyed").warning("next")  # the other sink writes the notice with it
    assert pipeline.flush(10) is False
    assert pipeline.stop(10) is False
    stats = sink_stats(pipeline, sink)
    assert 0 == stats["written"]
    assert stats["dropped_error"] == stats["offered"] > 0
    assert stats["last_error"] == (
        f"FluentAuthError: 127.0.0.1:{keyed_peer.port} refused the handshake: {reason}"
    )
    notices = [m for m in other.messages if m.startswith("aiolog lost")]
    assert notices
    assert reason in notices[0]
    assert sink.display_name in notices[0]
    assert not any(secret in str(stats) for secret in ("wrong", "nope", "s3cret"))
    assert [] == keyed_peer.entries()


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_no_blocking_call_on_the_loop(
    keyed_peer: FluentPeer, blockbuster: Any, loop_factory: LoopFactory, compress: str
) -> None:
    """Handshake, send, ack, close: nothing blocks the loop (asyncio and uvloop)."""
    sink = FluentSink.from_url(
        keyed_peer.url(shared_key="s3cret", username="ann", password="pw", compress=compress)
    )
    batch = [
        logging.LogRecord("nb", logging.INFO, __file__, 1, "n=%d", (i,), None) for i in range(600)
    ]

    async def main() -> list[int]:
        lost = [await sink.write(batch), await sink.write(batch[:1])]
        await sink.aclose()
        return lost

    assert [0, 0] == run(main, loop_factory)
    assert 601 == len(keyed_peer.wait_for(lambda got: len(got) >= 601))
    assert (2, 1, 0) == (sink.acks, sink.connects, sink.errors)


def test_no_shared_key_for_a_peer_that_wants_one(keyed_peer: FluentPeer) -> None:
    """A peer that sends HELO to a sink without a key: the error says to set shared_key."""
    sink = Probe.from_url(keyed_peer.url(backoff_max="0.2"))
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("keyed").warning("no key")
        assert pipeline.flush(10) is False
        stats = sink_stats(pipeline, sink)
    assert "asks for the shared-key handshake (HELO): set shared_key=" in stats["last_error"]
    assert (0, 1) == (stats["written"], stats["dropped"])


# ---------------------------------------------------------------------------- TLS


def test_tls_verified_against_the_ca(tmp_path: Path, certs: Certs) -> None:
    """fluent+tls with the CA that signed the peer's certificate: delivered and acked."""
    server = FluentPeer(tmp_path / "tls", certs=certs, shared_key="k")
    server.start()
    try:
        sink = FluentSink.from_url(
            server.url(scheme="fluent+tls", ca=str(certs.ca), shared_key="k")
        )
        with aiolog.configure([sink]) as pipeline:
            logging.getLogger("tls").warning("over tls")
            assert pipeline.flush(10)
            stats = sink_stats(pipeline, sink)
        assert ["over tls"] == [e["record"]["message"] for e in server.entries()]
        assert (1, 1) == (stats["written"], stats["acks"])
    finally:
        server.stop()


def test_tls_with_an_untrusted_certificate_is_refused(tmp_path: Path, certs: Certs) -> None:
    """No delivery to a peer the CA does not vouch for; last_error says why; drops counted."""
    server = FluentPeer(tmp_path / "untrusted", certs=certs)
    server.start()
    try:
        sink = Probe.from_url(server.url(scheme="fluent+tls", ca=str(certs.other_ca)))
        pipeline = aiolog.configure([sink])
        for i in range(3):
            logging.getLogger("tls").warning("secret %d", i)
        assert sink.failed.wait(10)
        assert not pipeline.stop(timeout=0.5)
        assert sink.last_error is not None
        assert sink.last_error.startswith("SSLCertVerificationError")
        assert "certificate verify failed" in sink.last_error
        assert 0 == sink.connects
        stats = sink_stats(pipeline, sink)
        assert (0, 3) == (stats["written"], stats["dropped"])
        assert [] == server.entries()
    finally:
        server.stop()
