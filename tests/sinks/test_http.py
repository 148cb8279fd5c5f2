"""HttpSink: NDJSON POSTs, gzip, headers and auth, the retry policy, TLS, redaction."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import sys
from collections.abc import Sequence

import pytest

import aiolog
from aiolog.sinks.http import HttpSink, retry_after
from tests.helpers import SignalsErrors, run
from tests.integration.peers import (
    Certs,
    HttpPeer,
    http_peer,
    make_certs,
    reserve_port,
    tcp_peer,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with openssl, once for the module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
    """A record as the listener hands it to sinks (message rendered)."""
    rec = logging.getLogger("app").makeRecord("app", level, __file__, 1, msg, (), None)
    rec.message = rec.getMessage()
    return rec


class Probe(SignalsErrors, HttpSink):
    """A HttpSink that signals its errors (to sequence tests without sleeping)."""


def send(sink: HttpSink, *batches: Sequence[str]) -> list[int]:
    """Write each batch of messages, close the sink; the lost count of each write."""

    async def main() -> list[int]:
        lost = [await sink.write([record(m) for m in batch]) for batch in batches]
        await sink.aclose()
        return lost

    return run(main)


def messages(peer: HttpPeer) -> list[list[str]]:
    """The messages of each request's NDJSON body."""
    return [
        [json.loads(line)["message"] for line in request.body.decode().splitlines()]
        for request in peer.requests
    ]


# ---------------------------------------------------------------------------- configuration


def test_from_url_separates_endpoint_options_and_credentials() -> None:
    """The query configures the sink; requests go to the bare URL; secrets are redacted."""
    sink = aiolog.sink(
        "https://user:pa55@logs.example.com:8443/ingest?token=tok3n&header.X-Tenant=blue&gzip=true"
    )
    assert isinstance(sink, HttpSink)
    assert "https://logs.example.com:8443/ingest" == sink.endpoint
    assert "Bearer tok3n" == sink.headers["Authorization"]
    assert "blue" == sink.headers["X-Tenant"]
    assert sink.compress
    for text in (sink.url, repr(sink), sink.display_name):
        assert "pa55" not in text
        assert "tok3n" not in text


def test_userinfo_becomes_basic_auth() -> None:
    """``user:password@`` in the URL is sent as HTTP Basic authentication."""
    sink = HttpSink.from_url("http://ann:s%40cret@127.0.0.1:1/")
    expected = "Basic " + base64.b64encode(b"ann:s@cret").decode()
    assert expected == sink.headers["Authorization"]


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://127.0.0.1:99999/", "bad port='99999'"),
        ("http://127.0.0.1:1/?gzipp=true", "unknown option 'gzipp'"),
        ("http://127.0.0.1:1/?ca=/etc/hosts", "only with an https URL"),
        ("http://127.0.0.1:1/?verify=false", "only with an https URL"),
        ("https://127.0.0.1:1/?ca=/nonexistent.pem", "bad ca='/nonexistent.pem'"),
        ("http://127.0.0.1:1/?retry_timeout=0", "bad retry_timeout"),
        ("http://127.0.0.1:1/?gzip=maybe", "bad gzip='maybe'"),
    ],
)
def test_bad_settings_fail_at_construction(url: str, match: str) -> None:
    """Every mistake is a ValueError when the sink is built, naming the culprit."""
    with pytest.raises(ValueError, match=match):
        aiolog.sink(url)


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx an http URL fails at configure time saying what to install."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ValueError, match=r"needs httpx: pip install httpx \(or .* 'http' extra\)"):
        aiolog.sink("http://127.0.0.1:1/?token=hidden")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("0", 0.0), ("soon", None), (None, None), ("", None)],
)
def test_retry_after_reads_delay_seconds(header: str | None, expected: float | None) -> None:
    """Retry-After in seconds is honoured; garbage is ignored."""
    assert expected == retry_after(header)


def test_retry_after_reads_an_http_date() -> None:
    """Retry-After as an HTTP date is the time left until then."""
    header = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert 30.0 == retry_after(header, now=1_000_000.0)


# ---------------------------------------------------------------------------- delivery


def test_posts_ndjson_with_headers() -> None:
    """One POST per batch: NDJSON body, content type, user agent, custom headers."""
    with http_peer() as peer:
        sink = HttpSink.from_url(peer.url(path="/in") + "?header.X-Tenant=blue&token=t0k")
        assert [0] == send(sink, ["a", "b", "c"])
        (request,) = peer.requests
        assert ("POST", "/in") == (request.method, request.path)
        assert "application/x-ndjson" == request.headers["content-type"]
        assert "blue" == request.headers["x-tenant"]
        assert "Bearer t0k" == request.headers["authorization"]
        assert request.headers["user-agent"].startswith("aiolog")
        assert [["a", "b", "c"]] == messages(peer)


def test_gzip_compresses_the_body() -> None:
    """``gzip=true`` sends ``Content-Encoding: gzip`` and a gzipped body."""
    with http_peer() as peer:
        sink = HttpSink.from_url(peer.url() + "?gzip=true")
        big = ["x" * 1000 + str(i) for i in range(100)]  # beyond the inline limit
        assert [0] == send(sink, big)
        (request,) = peer.requests
        assert "gzip" == request.headers["content-encoding"]
        assert len(request.raw_body) < len(request.body)
        assert [big] == messages(peer)


def test_batches_are_split_at_batch_bytes() -> None:
    """A batch larger than batch_bytes goes out as several requests, in order."""
    with http_peer() as peer:
        sink = HttpSink(peer.url(), batch_bytes=2048)
        batch = [f"{i:03d}" + "y" * 300 for i in range(20)]
        assert [0] == send(sink, batch)
        assert len(peer.requests) > 1
        assert all(len(r.body) <= 2048 for r in peer.requests)
        assert batch == [m for body in messages(peer) for m in body]


def test_503_then_200_is_retried_and_delivered_once() -> None:
    """A retryable status is retried with backoff; the records arrive exactly once."""
    with http_peer([(503, {}, b"busy")]) as peer:
        sink = HttpSink(peer.url(), backoff_initial=0.01)
        assert [0] == send(sink, ["once"])
        assert [["once"], ["once"]] == messages(peer)  # the 503'd attempt, then the 200
        assert 1 == sink.retries
        assert "HTTP 503 Scripted: busy" == sink.last_error


def test_400_is_dropped_counted_and_never_retried() -> None:
    """A client error drops the request's records at once and says why."""
    with http_peer([(400, {}, b"bad field")]) as peer:
        sink = HttpSink(peer.url(), backoff_initial=0.01)
        assert [3, 0] == send(sink, ["a", "b", "c"], ["d"])
        assert [["a", "b", "c"], ["d"]] == messages(peer)
        assert 0 == sink.retries
        assert sink.last_error is not None
        assert sink.last_error.startswith("HTTP 400 Scripted: bad field (not retried")


def test_429_waits_for_retry_after() -> None:
    """A 429 is retried after Retry-After (here: 0 seconds)."""
    with http_peer([(429, {"Retry-After": "0"}, b"")]) as peer:
        sink = HttpSink(peer.url(), backoff_initial=5.0)  # a retry by backoff would time out
        assert [0] == send(sink, ["r"])
        assert 2 == len(peer.requests)


def test_retry_after_beyond_the_retry_timeout_gives_up_at_once() -> None:
    """A Retry-After longer than retry_timeout allows drops the batch, counted."""
    with http_peer([(503, {"Retry-After": "3600"}, b"")]) as peer:
        sink = HttpSink(peer.url(), retry_timeout=5)
        assert [2] == send(sink, ["a", "b"])
        assert 1 == len(peer.requests)
        assert sink.last_error is not None
        assert "gave up after 1 attempts; 2 records dropped" in sink.last_error


def test_retryable_status_for_too_long_is_dropped() -> None:
    """Retries stop at retry_timeout; the records are counted as lost."""
    with http_peer(default=(502, {}, b"")) as peer:
        sink = HttpSink(peer.url(), retry_timeout=0.3, backoff_initial=0.05, backoff_max=0.1)
        assert [1] == send(sink, ["doomed"])
        assert len(peer.requests) >= 2
        assert sink.retries == len(peer.requests) - 1


def test_peer_down_at_start_then_up_gets_the_batch() -> None:
    """A refused connection sent nothing: it is retried until the peer is up."""
    peer = HttpPeer(sock=reserve_port())
    try:
        sink = Probe(peer.url(), backoff_initial=0.01, backoff_max=0.05)

        async def main() -> int:
            task = asyncio.ensure_future(sink.write([record("late")]))
            await asyncio.get_running_loop().run_in_executor(None, sink.failed.wait, 10)
            peer.listen()
            lost = await task
            await sink.aclose()
            return lost

        assert 0 == run(main)
        assert [["late"]] == messages(peer)
        assert sink.last_error is not None
        assert sink.last_error.startswith("ConnectionRefusedError")
    finally:
        peer.close()


def test_secrets_echoed_by_the_peer_are_redacted_from_last_error() -> None:
    """Even an error body quoting the token does not put it in last_error."""
    with http_peer([(401, {}, b"bad token s3cr3t-t0ken")]) as peer:
        sink = HttpSink.from_url(peer.url() + "?token=s3cr3t-t0ken")
        assert [1] == send(sink, ["x"])
        assert sink.last_error is not None
        assert "s3cr3t" not in sink.last_error
        assert "bad token ***" in sink.last_error


def test_https_verifies_the_peer(certs: Certs) -> None:
    """https with ca= delivers to the trusted peer."""
    with http_peer(ssl_context=certs.server_context()) as peer:
        sink = HttpSink.from_url(peer.url("https") + f"?ca={certs.ca}")
        assert [0] == send(sink, ["tls"])
        assert [["tls"]] == messages(peer)


def test_https_refuses_an_untrusted_certificate(certs: Certs) -> None:
    """An unverifiable peer gets nothing; last_error names the verification failure."""
    with http_peer(ssl_context=certs.server_context()) as peer:
        sink = Probe.from_url(peer.url("https") + f"?ca={certs.other_ca}&backoff_initial=0.01")
        assert isinstance(sink, Probe)

        async def main() -> None:
            task = asyncio.ensure_future(sink.write([record("secret")]))
            await asyncio.get_running_loop().run_in_executor(None, sink.failed.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await sink.aclose()

        run(main)
        assert sink.last_error is not None
        assert sink.last_error.startswith("SSLCertVerificationError")
        assert "certificate verify failed" in sink.last_error
        assert [] == peer.requests


# ---------------------------------------------------------------------------- via configure


def test_configure_counts_rejected_batches_as_dropped() -> None:
    """Through the pipeline: delivered records are written, 400'd ones dropped."""
    with http_peer([(400, {}, b"no")]) as peer, aiolog.configure([peer.url()]) as pipeline:
        logging.getLogger("app").warning("rejected")
        assert pipeline.flush(10) is False
        logging.getLogger("app").warning("accepted")
        assert pipeline.flush(10) is False  # "rejected" is still lost
        stats = pipeline.stats()["sinks"][peer.url()]
        assert (1, 1) == (stats["written"], stats["dropped"])
        sent = [m for batch in messages(peer) for m in batch]
        assert ["rejected", "accepted"] == [m for m in sent if not m.startswith("aiolog lost")]
        assert 1 == stats["notices"]  # the 400 said in the sink's own output


def test_network_sinks_make_no_blocking_call_on_the_listener_loop(
    blockbuster: object, certs: Certs
) -> None:
    """TLS, HTTP with gzip, OTLP protobuf and UDP syslog all stay off blocking calls."""
    with (
        tcp_peer(ssl_context=certs.server_context()) as tls_peer,
        http_peer() as peer,
        aiolog.configure(
            [
                f"tcp+tls://127.0.0.1:{tls_peer.port}?ca={certs.ca}",
                f"{peer.url()}?gzip=true",
                f"otlp+http://127.0.0.1:{peer.port}?encoding=protobuf&compression=gzip",
                f"syslog+udp://127.0.0.1:{tls_peer.port}",
            ]
        ) as pipeline,
    ):
        for i in range(500):
            logging.getLogger("app").warning("message %d %s", i, "x" * 200)
        assert pipeline.flush(10)
        stats = pipeline.stats()["sinks"]
        assert [(500, 0)] * 4 == [(s["written"], s["dropped"]) for s in stats.values()]
