"""The network sinks' shared machinery: TLS settings, backoff (options: test_options.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aiolog.sinks._base import describe
from aiolog.sinks._net import Backoff, TLSOptions
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
    with pytest.raises(ValueError, match=r"bad ca=.*nope\.pem.*: expected a readable file"):
        TLSOptions("S", "h", ca=str(missing))


def test_tls_ca_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    """A CA file that holds no certificate is refused at construction."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="expected a PEM file of certificates"):
        TLSOptions("S", "h", ca=str(junk))


def test_tls_loads_a_client_certificate(certs: Certs) -> None:
    """``cert``/``key`` load a client certificate; a key alone is refused."""
    TLSOptions("S", "h", ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key))
    with pytest.raises(ValueError, match="expected a client key together with cert="):
        TLSOptions("S", "h", key=str(certs.client_key))


def test_describe_names_the_type_and_never_returns_an_empty_message() -> None:
    """Errors read ``Type: message``; timeouts say they timed out."""
    assert "ConnectionRefusedError: [Errno 111] refused" == describe(
        ConnectionRefusedError(111, "refused")
    )
    assert "TimeoutError: timed out" == describe(TimeoutError())
    assert "OSError: OSError()" == describe(OSError())
