"""SyslogSink against a real rsyslogd (UDP, TCP, TLS): content, severities, faults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import aiolog
from aiolog.sinks.syslog import SyslogSink
from tests.helpers import SignalsErrors
from tests.integration.peers import Certs, make_certs
from tests.integration.rsyslog import Rsyslog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MULTILINE = 'first line\n  second: "quoted" \\ back ] bracket\nthird — ünïcødé ☃ 𝄞'


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with openssl, once for the module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Rsyslog]:
    """One rsyslogd for the module's tests (each test uses its own APP-NAME)."""
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"), certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_rsyslog(tmp_path: Path, certs: Certs) -> Iterator[Rsyslog]:
    """An rsyslogd the test starts, kills and restarts itself (not started yet)."""
    server = Rsyslog(tmp_path / "rsyslog", certs)
    try:
        yield server
    finally:
        server.stop()


class Probe(SignalsErrors, SyslogSink):
    """A SyslogSink that signals its errors (to sequence tests without sleeping)."""


def url(server: Rsyslog, transport: str, app: str, certs: Certs, **query: str) -> str:
    """The sink URL of ``server``'s input for ``transport``."""
    port = {"udp": server.udp_port, "tcp": server.tcp_port, "tls": server.tls_port}[transport]
    options = {"app_name": app, **query}
    if transport == "tls":
        options.setdefault("ca", str(certs.ca))
    return f"syslog+{transport}://127.0.0.1:{port}?" + "&".join(
        f"{k}={v}" for k, v in options.items()
    )


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_messages_arrive_whole_with_unicode_and_severities(
    rsyslog: Rsyslog, certs: Certs, transport: str
) -> None:
    """Multi-line messages arrive whole, unicode intact, each level with its severity."""
    app = f"whole-{transport}"
    with aiolog.configure(
        [url(rsyslog, transport, app, certs, facility="local3")], level=1
    ) as pipeline:
        log = logging.getLogger("app.syslog")
        levels = [logging.DEBUG, logging.INFO, 25, logging.WARNING, logging.ERROR, 50, 5]
        for level in levels:
            log.log(level, "%s %d", MULTILINE, level)
        try:
            raise RuntimeError("kaput ☃")
        except RuntimeError:
            log.exception("caught")

        async def in_a_task() -> None:
            log.info("from a task", extra={"user": "ann"})

        async def main() -> None:
            await asyncio.create_task(in_a_task(), name='worker "7"')

        asyncio.run(main())
        assert pipeline.flush(10)
        rsyslog.wait_for_app(app, len(levels) + 2)
    # asyncio.run logs "Using selector" at DEBUG: keep only this test's logger.
    records = [r for r in rsyslog.records(app) if r["msgid"] == "app.syslog"]
    assert [f"{MULTILINE} {level}" for level in levels] == [r["msg"] for r in records[:-2]]
    assert ["7", "6", "6", "4", "3", "2", "7"] == [r["severity"] for r in records[:-2]]
    assert {"19"} == {r["facility"] for r in records}
    assert {"app.syslog"} == {r["msgid"] for r in records}
    exception = records[-2]
    assert "3" == exception["severity"]
    assert exception["msg"].startswith("caught\nTraceback (most recent call last):\n")
    assert exception["msg"].endswith("RuntimeError: kaput ☃")
    task = records[-1]
    coro = "test_messages_arrive_whole_with_unicode_and_severities.<locals>.in_a_task"
    origin = f'[aiolog@32473 logger="app.syslog" task="worker \\"7\\"" coro="{coro}"]'
    assert origin in task["sd"]
    assert '[extra@32473 user="ann"]' in task["sd"]
    assert task["time"].endswith("Z")
    stats = pipeline.stats()["sinks"]
    assert [0] == [s["dropped"] for s in stats.values()]


def test_lf_framing_keeps_a_message_whole_with_escaped_newlines(
    rsyslog: Rsyslog, certs: Certs
) -> None:
    """With framing=lf a multi-line message is one message, newlines as #012."""
    app = "lf-tcp"
    with aiolog.configure([url(rsyslog, "tcp", app, certs, framing="lf")]) as pipeline:
        logging.getLogger("lf").warning("one\ntwo")
        logging.getLogger("lf").warning("three")
        assert pipeline.flush(10)
        records = rsyslog.wait_for_app(app, 2)
    assert ["one#012two", "three"] == [r["msg"] for r in records]


def test_large_tcp_message_arrives_whole(rsyslog: Rsyslog, certs: Certs) -> None:
    """A 40 KB message over TCP is one message (octet counting, no cut by default)."""
    app = "large-tcp"
    big = "".join(f"{i:05d} ünï\n" for i in range(4000))[:40_000]
    with aiolog.configure([url(rsyslog, "tcp", app, certs)]) as pipeline:
        logging.getLogger("big").warning(big)
        assert pipeline.flush(10)
        records = rsyslog.wait_for_app(app, 1)
    assert [big.rstrip("\n")] == [r["msg"] for r in records]


def test_udp_cuts_long_messages_to_max_size(rsyslog: Rsyslog, certs: Certs) -> None:
    """Over UDP a long message arrives cut to max_size bytes, still valid UTF-8."""
    app = "cut-udp"
    with aiolog.configure([url(rsyslog, "udp", app, certs)]) as pipeline:
        logging.getLogger("cut").warning("€" * 2000)
        assert pipeline.flush(10)
        records = rsyslog.wait_for_app(app, 1)
    msg = records[0]["msg"]
    assert set(msg) == {"€"}
    assert 1900 < len(msg.encode("utf-8")) <= 2048


def test_tls_with_an_untrusted_certificate_is_refused(rsyslog: Rsyslog, certs: Certs) -> None:
    """No delivery to a peer the CA does not vouch for; last_error says why; drops counted."""
    app = "untrusted"
    sink = Probe.from_url(url(rsyslog, "tls", app, certs, ca=str(certs.other_ca)))
    assert isinstance(sink, Probe)
    pipeline = aiolog.configure([sink])
    for i in range(3):
        logging.getLogger("tls").warning("secret %d", i)
    assert sink.failed.wait(10)
    assert not pipeline.stop(timeout=0.5)
    assert sink.last_error is not None
    assert sink.last_error.startswith("SSLCertVerificationError")
    assert "certificate verify failed" in sink.last_error
    assert 0 == sink.connects
    stats = pipeline.stats()["sinks"][sink.display_name]
    assert (0, 3) == (stats["written"], stats["dropped"])
    assert [] == rsyslog.records(app)


def test_peer_down_at_start_then_up(own_rsyslog: Rsyslog, certs: Certs) -> None:
    """configure() with rsyslog down works; what was logged arrives once it is up."""
    app = "late"
    sink = Probe.from_url(url(own_rsyslog, "tcp", app, certs, backoff_max="0.2"))
    with aiolog.configure([sink]) as pipeline:
        logging.getLogger("late").warning("while down")
        assert sink.failed.wait(10)
        own_rsyslog.start()
        logging.getLogger("late").warning("after start")
        assert pipeline.flush(15)
        records = own_rsyslog.wait_for_app(app, 2)
        stats = pipeline.stats()["sinks"][sink.display_name]
    assert ["while down", "after start"] == [r["msg"] for r in records]
    assert (2, 0) == (stats["written"], stats["dropped"])
    assert sink.last_error is not None
    assert sink.last_error.startswith("ConnectionRefusedError")


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_peer_killed_mid_stream(own_rsyslog: Rsyslog, certs: Certs, transport: str) -> None:
    """rsyslogd killed between batches: the sink notices, reconnects to the new one,
    delivers the next batch whole, and every record is counted."""
    app = f"killed-{transport}"
    sink = Probe.from_url(url(own_rsyslog, transport, app, certs, backoff_max="0.2"))
    own_rsyslog.start()
    with aiolog.configure([sink]) as pipeline:
        log = logging.getLogger("killed")
        for i in range(50):
            log.warning("before %d", i)
        assert pipeline.flush(10)
        assert 50 == len(own_rsyslog.wait_for_app(app, 50))
        own_rsyslog.kill()
        for i in range(50):
            log.warning("after %d", i)
        own_rsyslog.start()
        assert pipeline.flush(15)
        records = own_rsyslog.wait_for_app(app, 100)
        stats = pipeline.stats()["sinks"][sink.display_name]
    assert [f"before {i}" for i in range(50)] + [f"after {i}" for i in range(50)] == [
        r["msg"] for r in records
    ]
    assert (100, 0) == (stats["written"], stats["dropped"])
    assert 2 == sink.connects
