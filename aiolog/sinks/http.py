"""NDJSON over HTTP: batches of JSON lines POSTed to a collector (Vector, Fluent Bit, ...).

::

    HttpSink.from_url("http://127.0.0.1:8686/logs")
    HttpSink.from_url("https://ingest.example.com/v1/ndjson?gzip=true&token=SECRET")
    HttpSink.from_url("https://h/in?header.X-Tenant=blue&ca=/etc/ssl/internal.pem")

Each ``write`` sends the batch as one or more POST requests of at most ``batch_bytes``
(default 1 MiB), ``Content-Type: application/x-ndjson``, one record per line
(:class:`aiolog.formatting.JSONFormatter` unless another formatter is set).

Requires the ``http`` extra (``pip install '.[http]'`` in a checkout, which installs
`httpx <https://www.python-httpx.org/>`_); a URL that needs it fails at configure time
with a :class:`ValueError` saying so.

**Retries** follow the status (:class:`HttpPoster`): 2xx is delivered; 429, 502, 503 and 504
are retried, after ``Retry-After`` when the answer has one (seconds or an HTTP date), with
backoff otherwise, for at most ``retry_timeout`` seconds (default 60) from the first
attempt; any other status (400, 401, 413, 500, ...) drops the request's records, counted,
and is never retried. A connection that cannot be made sent nothing and is retried like
a TCP connect, without that limit: the records wait, in the listener's bounded buffer
behind this one. A request that failed after it was sent (a timeout, a reset) may have
been processed: it is retried within ``retry_timeout``, so the peer may see it twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip as _gzip
import logging
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from aiolog import _options
from aiolog._urls import redact_url
from aiolog.sinks._base import describe
from aiolog.sinks._net import (
    COMMON_OPTIONS,
    TLS_OPTIONS,
    NetworkSink,
    TLSOptions,
    tls_options,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpPoster", "HttpSink"]

#: Statuses that ask the client to try again later (the OTLP/HTTP list).
RETRYABLE: Final = frozenset({429, 502, 503, 504})
RETRY_TIMEOUT: Final = 60.0
BATCH_BYTES: Final = 1 << 20
#: Bodies larger than this are gzipped on the sink's worker thread, not on the loop.
_GZIP_INLINE: Final = 64 * 1024

HTTP_OPTIONS: Final = COMMON_OPTIONS | TLS_OPTIONS | {"retry_timeout", "batch_bytes", "token"}


def require_httpx(kind: str, url: str, extra: str = "http") -> None:
    """Raise :class:`ValueError` naming the extra to install when httpx is missing."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{kind}: {redact_url(url)!r} needs httpx: pip install httpx "
            f"(or install aiolog-queue with its {extra!r} extra)"
        ) from None


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost OS or TLS error behind an httpx exception, for a clear last_error."""
    seen = {id(exc)}
    inner = exc
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    if isinstance(inner, (OSError, ssl.SSLError)) and str(inner):
        return inner
    return exc


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpPoster(NetworkSink):
    """The HTTP half of the HTTP sinks: client, headers, auth, gzip, retry policy.

    Subclasses encode batches and call :meth:`post`; they may override :meth:`rejected`
    to read partial failures from a 2xx answer.
    """

    kind = "HttpPoster"
    #: The optional dependency group that brings what the sink needs.
    extra = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        compress: bool = False,
        retry_timeout: float | str = RETRY_TIMEOUT,
        batch_bytes: int | str = BATCH_BYTES,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        verify: bool | str = True,
        server_hostname: str | None = None,
        **options: Any,
    ) -> None:
        require_httpx(self.kind, url, self.extra)
        where = f"{self.kind}()"
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _options.OptionError(where, "url", redact_url(url), "an http:// or https:// URL")
        host, _ = _options.endpoint(where, url, 443 if scheme == "https" else 80)
        tls_keys = {
            k: v
            for k, v in {
                "ca": ca,
                "cert": cert,
                "key": key,
                "server_hostname": server_hostname,
            }.items()
            if v is not None
        }
        given_verify = verify
        verify = _options.boolean(where, "verify", verify)
        if scheme == "http" and (tls_keys or not verify):
            key_, value = next(iter(sorted(tls_keys.items())), ("verify", given_verify))
            raise _options.OptionError(where, key_, value, "TLS options only with an https URL")
        self.compress = _options.boolean(where, "compress", compress)
        self.retry_timeout = _options.duration(where, "retry_timeout", retry_timeout, positive=True)
        self.batch_bytes = _options.size(where, "batch_bytes", batch_bytes, low=1024, high=1 << 30)
        self.tls: TLSOptions | None = None
        if scheme == "https":
            self.tls = tls_options(where, host, {**tls_keys, "verify": verify})
        super().__init__(**options)
        netloc = parts.netloc.rpartition("@")[2]
        #: Where requests go: the URL without credentials or the sink's own options.
        self.endpoint = urllib.parse.urlunsplit((scheme, netloc, parts.path or "/", "", ""))
        self.headers: dict[str, str] = {"User-Agent": _user_agent()}
        if parts.username is not None:
            import base64

            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {basic}"
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        for name, value in (headers or {}).items():
            self.headers[name] = value
        # Header values, and the credential part of "Scheme credential" values, are
        # scrubbed from error texts (longest first, so no fragment survives).
        secrets = set()
        for name, value in self.headers.items():
            if name.lower() != "user-agent":
                secrets.add(value)
                secrets.add(value.partition(" ")[2])
        if parts.password:
            secrets.add(urllib.parse.unquote(parts.password))
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self.url = redact_url(url)
        self._client: httpx.AsyncClient | None = None

    def _redact(self, text: str) -> str:
        """Header values (tokens) never appear in errors, even if a peer echoes them."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _client_for_loop(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            import httpx

            client = self._client = httpx.AsyncClient(
                verify=self.tls.context if self.tls is not None else False,
                trust_env=False,  # no proxy variables or .netrc: a file read on the loop
                timeout=httpx.Timeout(self.write_timeout, connect=self.connect_timeout),
                follow_redirects=False,
            )
            self.connects += 1
        return client

    async def _compressed(self, data: bytes) -> bytes:
        if not self.compress:
            return data
        if len(data) <= _GZIP_INLINE:
            return _gzip.compress(data, 6)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, _gzip.compress, data, 6)

    def rejected(self, response: httpx.Response, count: int) -> int:
        """How many of ``count`` records a 2xx ``response`` says were not accepted."""
        return 0

    async def post(self, data: bytes, content_type: str, count: int) -> int:
        """POST ``data`` (carrying ``count`` records) under the retry policy; return losses."""
        import httpx

        client = self._client_for_loop()
        headers = dict(self.headers)
        headers["Content-Type"] = content_type
        if self.compress:
            headers["Content-Encoding"] = "gzip"
        body = await self._compressed(data)
        extensions = {}
        if (
            self.tls is not None
            and self.tls.server_hostname != urllib.parse.urlsplit(self.endpoint).hostname
        ):
            extensions["sni_hostname"] = self.tls.server_hostname
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_timeout
        attempts = 0
        while True:
            if attempts:
                self.retries += 1
            attempts += 1
            try:
                response = await client.post(
                    self.endpoint, content=body, headers=headers, extensions=extensions
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent: wait for the peer as a TCP sink waits for its connect.
                self.note_error(_root_cause(exc))
                await self.sleep_backoff()
                continue
            except httpx.TransportError as exc:  # sent, fate unknown: retry within the limit
                self.note_error(_root_cause(exc))
                delay = self.backoff.next()
                if loop.time() + delay > deadline:
                    return count
                await asyncio.sleep(delay)
                continue
            status = response.status_code
            if 200 <= status < 300:
                self.backoff.reset()
                try:
                    return min(count, max(0, self.rejected(response, count)))
                except Exception as exc:  # an unreadable answer: delivered all the same
                    self.note_error(f"unreadable answer: {describe(exc)}")
                    return 0
            reason = f"HTTP {status} {response.reason_phrase}".rstrip()
            snippet = response.text[:200].strip()
            if snippet:
                reason = f"{reason}: {snippet}"
            if status not in RETRYABLE:
                self.note_error(f"{reason} (not retried; {count} records dropped)")
                return count
            asked = retry_after(response.headers.get("Retry-After"))
            delay = self.backoff.next() if asked is None else asked
            if loop.time() + delay > deadline:
                self.note_error(
                    f"{reason} (gave up after {attempts} attempts; {count} records dropped)"
                )
                return count
            self.note_error(reason)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def after_fork(self) -> None:
        """Forget the parent's client and connections without closing them."""
        self._client = None
        super().after_fork()


def _user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"aiolog/{version('aiolog-queue')}"
    except Exception:
        return "aiolog"


class HttpSink(HttpPoster):
    """POST records as newline-delimited JSON.

    :param url: ``http://`` or ``https://`` endpoint (credentials in it become Basic auth
        and are redacted everywhere).
    :param gzip: compress request bodies (``Content-Encoding: gzip``).
    :param headers: extra request headers (in a URL: ``header.NAME=VALUE``, or
        ``headers=k1=v1,k2=v2``).
    :param token: sent as ``Authorization: Bearer TOKEN``.
    :param format: ``"json"`` (default), ``"logfmt"`` or ``"text"`` lines.
    :param retry_timeout: seconds a request may be retried on 429/502/503/504 and errors.
    :param batch_bytes: largest request body before compression (default 1 MiB).
    :param options: ``level``, ``connect_timeout``, ``write_timeout``, ``backoff_initial``,
        ``backoff_max``; for https ``ca``, ``cert``, ``key``, ``verify``,
        ``server_hostname``.
    """

    kind = "HttpSink"

    def __init__(
        self,
        url: str,
        *,
        gzip: bool | str = False,
        format: str | None = None,
        **options: Any,
    ) -> None:
        compress = _options.boolean(f"{self.kind}()", "gzip", gzip)
        fmt = _options.log_format(f"{self.kind}()", format)
        super().__init__(url, compress=compress, **options)
        if fmt is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(fmt)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> HttpSink:
        """Build from ``http(s)://host[:port]/path?OPTIONS``; keyword options override.

        The query holds only the sink's options (an unknown one is an error):
        ``gzip``, ``format``, ``token``, ``header.NAME``, ``retry_timeout``,
        ``batch_bytes``, timeouts, backoff and TLS options.
        """
        where = _options.url_where(url)
        known = HTTP_OPTIONS | {"gzip", "format", "headers", "header."}
        merged = _options.merged(where, url, options, known)
        given = merged.pop("headers", None)
        headers = _options.pairs(where, "headers", given) if isinstance(given, str) else {}
        headers.update(given if isinstance(given, Mapping) else {})
        for key in [k for k in merged if k.startswith("header.")]:
            headers[key[len("header.") :]] = merged.pop(key)
        with _options.located(where):
            return cls(url, headers=headers, **merged)

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """POST the batch in bodies of at most ``batch_bytes``; return the records lost."""
        lost = len(records)  # each record sent counts itself off
        lines: list[bytes] = []
        size = 0
        for line in self.render(records, self.format):
            lost -= 1
            if "\n" in line or "\r" in line:
                line = line.replace("\r", "\\r").replace("\n", "\\n")
            data = f"{line}\n".encode("utf-8", "backslashreplace")
            if lines and size + len(data) > self.batch_bytes:
                lost += await self.post(b"".join(lines), "application/x-ndjson", len(lines))
                lines, size = [], 0
            lines.append(data)
            size += len(data)
        if lines:
            lost += await self.post(b"".join(lines), "application/x-ndjson", len(lines))
        return lost
