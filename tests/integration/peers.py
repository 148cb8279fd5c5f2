"""Peers for the network sink tests, all on 127.0.0.1 and free ports.

* :class:`TcpPeer`: a TCP (or TLS) server on its own thread and loop that records what it
  receives; it can stall (accept and never read), drop its clients, or start listening
  later on a port reserved now (so "peer down at start" has no port race).
* :class:`HttpPeer`: a small HTTP/1.1 server that records requests and answers from a
  script (``503`` then ``200``, ``429`` with ``Retry-After``, ``400``...).
* :func:`make_certs`: a CA, a server certificate for ``127.0.0.1``/``localhost`` and an
  unrelated CA, made with the ``openssl`` command.

Waiting is condition-based (a :class:`threading.Condition` notified on every arrival) and
always bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "Certs",
    "HttpPeer",
    "HttpRequest",
    "TcpPeer",
    "in_ci",
    "make_certs",
    "reserve_port",
]


def in_ci() -> bool:
    """True on CI (``CI=true``), where a missing external program must fail, not skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> str:
    """The path of ``name``; skip the test when it is missing, except on CI (fail)."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def reserve_port(kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 and not listening: connects are refused."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (for servers that bind it themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _abort_all(writers: list[asyncio.StreamWriter], tasks: set[asyncio.Task[Any]]) -> None:
    """Abort every connection and end its handler, letting the transports really close."""
    for _ in range(3):  # connections accepted just now: let their handlers register
        await asyncio.sleep(0)
    for writer in writers:
        writer.transport.abort()
    writers.clear()
    if tasks:  # aborted, their reads end at once: no cancel (3.11 logs cancelled handlers)
        await asyncio.wait(tasks, timeout=5)
    tasks.clear()
    for _ in range(3):  # connection_lost callbacks run on the next iterations
        await asyncio.sleep(0)


class _LoopThread:
    """An asyncio loop on a daemon thread, for servers the tests run beside the code."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` (a coroutine function or plain function) on the loop; return its result."""

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def close(self) -> None:
        """End what is left on the loop (TLS handshakes in progress...), then stop it."""

        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _ in range(5):  # transports close on the following iterations
                await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            self.call(finish)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# ---------------------------------------------------------------------------- TCP


class _Peer:
    """What the test servers share: a loop thread, a socket, connections, and closing."""

    _loop: _LoopThread
    _sock: socket.socket
    _server: asyncio.AbstractServer | None
    _writers: list[asyncio.StreamWriter]
    _tasks: set[asyncio.Task[Any]]

    def close(self) -> None:
        """Stop listening, close every connection and the loop."""

        async def stop() -> None:
            # Connections first, the server last: on 3.13 a connection accepted just before
            # Server.close() but attached after it is never closed (an unclosed transport).
            await _abort_all(self._writers, self._tasks)
            if self._server is not None:
                abort_clients = getattr(self._server, "abort_clients", None)  # 3.13+
                if abort_clients is not None:
                    abort_clients()
                self._server.close()
                await self._server.wait_closed()

        try:
            self._loop.call(stop)
        finally:
            self._loop.close()
            self._sock.close()


class TcpPeer(_Peer):
    """A TCP server that records the bytes it receives (all connections, in order).

    :param stall: accept connections but read nothing from them (a stalled consumer)
        until :meth:`resume`.
    :param ssl_context: serve TLS with this context.
    :param sock: a socket from :func:`reserve_port`; the peer listens on it only at
        :meth:`listen`, so connects are refused until then.
    """

    def __init__(
        self,
        *,
        stall: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.stall = stall
        self.ssl_context = ssl_context
        self._sock = sock or reserve_port()
        if stall:  # small kernel buffers: the stall shows after little data
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self.chunks: list[bytes] = []
        self._arrived = threading.Condition()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop = _LoopThread(f"tcp-peer:{self.port}")
        self._resumed: asyncio.Event = self._loop.call(asyncio.Event)

    @property
    def data(self) -> bytes:
        """Everything received so far."""
        with self._arrived:
            return b"".join(self.chunks)

    def lines(self) -> list[str]:
        """The received data as text lines (without the final empty one)."""
        return self.data.decode("utf-8").splitlines()

    def listen(self) -> TcpPeer:
        """Start accepting connections."""

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._serve, sock=self._sock, ssl=self.ssl_context
            )

        self._loop.call(start)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        with self._arrived:
            self.connections += 1
            self._arrived.notify_all()
        self._writers.append(writer)
        if self.stall:
            writer.transport.pause_reading()
            await self._resumed.wait()
            writer.transport.resume_reading()
        with contextlib.suppress(OSError, ssl.SSLError):
            while chunk := await reader.read(65536):
                with self._arrived:
                    self.chunks.append(chunk)
                    self._arrived.notify_all()
        writer.close()

    def wait_for(self, predicate: Callable[[TcpPeer], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every arrival); False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: predicate(self), timeout)

    def wait_for_bytes(self, size: int, timeout: float = 10.0) -> bool:
        """Block until ``size`` bytes arrived in all; False on timeout."""
        return self.wait_for(lambda peer: sum(map(len, peer.chunks)) >= size, timeout)

    def resume(self) -> None:
        """A stalled peer starts reading: what waited in the socket buffers arrives."""

        def go() -> None:
            self.stall = False
            self._resumed.set()

        self._loop.call(go)

    def drop_clients(self) -> None:
        """Close every client connection (the peer goes away mid-stream), keep listening."""

        def close() -> None:
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()

        self._loop.call(close)


@contextlib.contextmanager
def tcp_peer(**options: Any) -> Iterator[TcpPeer]:
    """A listening :class:`TcpPeer`, closed afterwards."""
    peer = TcpPeer(**options)
    try:
        yield peer.listen() if "sock" not in options else peer
    finally:
        peer.close()


# ---------------------------------------------------------------------------- HTTP


@dataclasses.dataclass
class HttpRequest:
    """One request as the peer saw it: body already gunzipped when it was gzip-encoded."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    raw_body: bytes


#: A scripted answer: (status, headers, body).
Answer = tuple[int, dict[str, str], bytes]


class HttpPeer(_Peer):
    """A minimal HTTP/1.1 server (keep-alive) that records requests and answers by script.

    ``answers`` are used in order, one per request; when they run out every request gets
    ``default``. Chunked request bodies are not supported (the sinks send Content-Length).
    """

    def __init__(
        self,
        answers: list[Answer] | None = None,
        *,
        default: Answer = (200, {}, b""),
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.answers = list(answers or [])
        self.default = default
        self.ssl_context = ssl_context
        self.requests: list[HttpRequest] = []
        self._arrived = threading.Condition()
        self._sock = sock or reserve_port()
        self.port: int = self._sock.getsockname()[1]
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = _LoopThread(f"http-peer:{self.port}")

    def url(self, scheme: str = "http", path: str = "/") -> str:
        """``scheme://127.0.0.1:PORT/path``."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def listen(self) -> HttpPeer:
        """Start accepting connections."""

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._serve, sock=self._sock, ssl=self.ssl_context
            )

        self._loop.call(start)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
                with self._arrived:
                    self.requests.append(HttpRequest(method, path, headers, body, raw))
                    status, extra, answer = self.answers.pop(0) if self.answers else self.default
                    self._arrived.notify_all()
                response = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {len(answer)}"]
                response += [f"{name}: {value}" for name, value in extra.items()]
                writer.write(("\r\n".join(response) + "\r\n\r\n").encode("latin-1") + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests arrived; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)


@contextlib.contextmanager
def http_peer(answers: list[Answer] | None = None, **options: Any) -> Iterator[HttpPeer]:
    """A listening :class:`HttpPeer`, closed afterwards."""
    peer = HttpPeer(answers, **options)
    try:
        yield peer.listen() if "sock" not in options else peer
    finally:
        peer.close()


# ---------------------------------------------------------------------------- certificates


@dataclasses.dataclass(frozen=True)
class Certs:
    """Files made by :func:`make_certs`."""

    ca: Path  # the CA that signed the server certificate
    server_cert: Path  # for IP:127.0.0.1 and DNS:localhost
    server_key: Path
    other_ca: Path  # an unrelated CA: verifying the server against it must fail
    client_cert: Path  # signed by ``ca``, for client-certificate tests
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server-side context presenting the server certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def make_certs(directory: Path) -> Certs:
    """Create a CA, a server and a client certificate it signed, and an unrelated CA."""
    require_program("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=aiolog test {name}",
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs key usage.
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
            cwd=directory,
        )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    (directory / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={'localhost' if name == 'server' else 'client'}",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        other_ca=directory / "other-ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
