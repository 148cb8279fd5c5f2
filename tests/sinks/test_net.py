"""The network sinks' shared machinery: options, endpoints, TLS settings, backoff."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aiolog.sinks._base import describe
from aiolog.sinks._net import Backoff, TLSOptions, parse_endpoint, parse_size, url_options
from tests.integration.peers import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with openssl, once for the module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() -> None:
    """Delays double from the initial one, stop growing at the maximum, jitter within [s/2, s]."""
    low = Backoff(0.1, 1.0, random=lambda: 0.0)
    high = Backoff(0.1, 1.0, random=lambda: 1.0)
    assert [0.05, 0.1, 0.2, 0.4, 0.5, 0.5] == [pytest.approx(low.next()) for _ in range(6)]
    assert [0.1, 0.2, 0.4, 0.8, 1.0] == [pytest.approx(high.next()) for _ in range(5)]


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    """After a success the next failure waits the short delay again."""
    backoff = Backoff(0.1, 30.0, random=lambda: 1.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert pytest.approx(0.1) == backoff.next()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:5170", ("127.0.0.1", 5170)),
        ("syslog+udp://LogHost", ("loghost", 514)),
        ("tcp://[::1]:9", ("::1", 9)),
        ("https://user:secret@example.com:8443/x?y=1", ("example.com", 8443)),
    ],
)
def test_parse_endpoint_returns_host_and_port(url: str, expected: tuple[str, int]) -> None:
    """Host (IPv6 without brackets) and port, the default port when none is given."""
    assert expected == parse_endpoint("S", url, 514)


@pytest.mark.parametrize("port", ["99999", "0", "12a", "-1"])
def test_parse_endpoint_names_a_bad_port(port: str) -> None:
    """An out-of-range or non-numeric port is refused at construction, and named."""
    with pytest.raises(ValueError, match=f"bad port '{port}'"):
        parse_endpoint("S", f"syslog+tcp://host:{port}", 514)


def test_parse_endpoint_needs_a_host_and_redacts_the_url() -> None:
    """A URL without host is refused; its password never appears in the message."""
    with pytest.raises(ValueError, match="names no host") as info:
        parse_endpoint("S", "tcp://user:hunter2@:80", 1)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("2048", 2048), ("64KB", 65536), ("1MiB", 1 << 20), (512, 512)]
)
def test_parse_size_understands_binary_units(value: object, expected: int) -> None:
    """Sizes are bytes, with K/M/G suffixes in units of 1024."""
    assert expected == parse_size("S", "max_size", value, low=1, high=1 << 30)


def test_parse_size_refuses_out_of_range_values() -> None:
    """A size outside the allowed range names the option."""
    with pytest.raises(ValueError, match="bad max_size='10'"):
        parse_size("S", "max_size", "10", low=480, high=65507)


def test_url_options_refuses_unknown_keys_and_redacts() -> None:
    """A typo in an option is an error at configure time; secrets stay hidden."""
    with pytest.raises(ValueError, match="unknown option 'verfy'") as info:
        url_options("S", "https://h/?verfy=false&token=abc", {}, {"verify", "token"})
    assert "abc" not in str(info.value)


def test_url_options_keyword_options_win_and_prefixes_admit_families() -> None:
    """Keyword options override the query; ``header.`` admits every ``header.NAME``."""
    merged = url_options("S", "http://h/?a=1&header.X-Key=k", {"a": 2}, {"a", "header."})
    assert {"a": 2, "header.X-Key": "k"} == merged


def test_tls_verifies_by_default_and_uses_the_host_for_sni() -> None:
    """Verification is on unless switched off, and SNI is the URL's host."""
    tls = TLSOptions("S", "logs.example.com")
    assert ssl.CERT_REQUIRED == tls.context.verify_mode
    assert tls.context.check_hostname
    assert "logs.example.com" == tls.server_hostname


def test_tls_verify_false_must_be_explicit_and_turns_every_check_off() -> None:
    """``verify=false`` disables the checks; nothing else does."""
    tls = TLSOptions("S", "h", verify="false")
    assert ssl.CERT_NONE == tls.context.verify_mode
    assert not tls.context.check_hostname


def test_tls_unreadable_ca_is_a_configure_time_error(tmp_path: Path) -> None:
    """A missing CA file raises ValueError naming it, before anything connects."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"bad ca=.*nope\.pem.*not a readable file"):
        TLSOptions("S", "h", ca=str(missing))


def test_tls_ca_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    """A CA file that holds no certificate is refused at construction."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="not a PEM file"):
        TLSOptions("S", "h", ca=str(junk))


def test_tls_loads_a_client_certificate(certs: Certs) -> None:
    """``cert``/``key`` load a client certificate; a key alone is refused."""
    TLSOptions("S", "h", ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key))
    with pytest.raises(ValueError, match="needs cert="):
        TLSOptions("S", "h", key=str(certs.client_key))


def test_describe_names_the_type_and_never_returns_an_empty_message() -> None:
    """Errors read ``Type: message``; timeouts say they timed out."""
    assert "ConnectionRefusedError: [Errno 111] refused" == describe(
        ConnectionRefusedError(111, "refused")
    )
    assert "TimeoutError: timed out" == describe(TimeoutError())
    assert "OSError: OSError()" == describe(OSError())
