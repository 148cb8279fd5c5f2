"""A real Fluent Forward receiver for the tests: FluentServer (@fluent-org/logger) under node.

``tests/integration/fluent/server.js`` wraps the Fluent organisation's own server; .ci/run
installs it (``npm install`` in that directory). :class:`FluentPeer` starts it on a port
of 127.0.0.1 (the same one again after :meth:`kill`), and reads back the entries it wrote
to its output file, one JSON object per line: ``{tag, time: {epoch, nano}, chunk, record}``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import Certs, free_port, in_ci

__all__ = ["FluentPeer", "require_fluent_server"]

HERE = Path(__file__).parent / "fluent"
SERVER = HERE / "server.js"
MODULE = HERE / "node_modules" / "@fluent-org" / "logger"


def require_fluent_server() -> str:
    """The node binary, with FluentServer installed; skip (fail on CI) when missing."""
    node = shutil.which("node")
    why = None
    if node is None:
        why = "node is not installed"
    elif not MODULE.is_dir():
        why = f"@fluent-org/logger is not installed (cd {HERE} && npm install)"
    if why is not None:
        if in_ci():
            pytest.fail(f"{why} (.ci/run installs it)")
        pytest.skip(why)
    assert node is not None
    return node


class FluentPeer:
    """A FluentServer process; :meth:`entries` is what it received, in order."""

    def __init__(
        self,
        directory: Path,
        *,
        shared_key: str | None = None,
        user: str | None = None,
        certs: Certs | None = None,
    ) -> None:
        self.node = require_fluent_server()
        directory.mkdir(parents=True, exist_ok=True)
        self.out = directory / "entries.jsonl"
        self.out.touch()
        self.shared_key = shared_key
        self.user = user
        self.certs = certs
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self, *, die_after: int | None = None, timeout: float = 15.0) -> FluentPeer:
        """Start the server and wait until it listens (``die_after``: see server.js)."""
        command = [self.node, str(SERVER), "--out", str(self.out), "--port", str(self.port)]
        if self.shared_key is not None:
            command += ["--shared-key", self.shared_key]
        if self.user is not None:
            command += ["--user", self.user]
        if self.certs is not None:
            command += ["--tls-cert", str(self.certs.server_cert)]
            command += ["--tls-key", str(self.certs.server_key)]
        if die_after is not None:
            command += ["--die-after", str(die_after)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        # The first line: "listening PORT" (readline returns "" if node died first).
        line = _readline(self.process, timeout)
        if line.strip() != f"listening {self.port}":
            self.stop()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"FluentServer did not start: {line!r} {stderr}")
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash): what it wrote to its file stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.wait_exit(10)

    def wait_exit(self, timeout: float) -> bool:
        """Wait for the process to end (``--die-after`` kills it); False on timeout."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return True

    def stop(self) -> None:
        """SIGTERM the server and wait for it; SIGKILL it if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if not self.wait_exit(10):
                self.process.kill()
        self.wait_exit(10)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry the server received so far (all its runs), in order."""
        lines = self.out.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def text(self) -> str:
        """The output file as text (for substring checks)."""
        return self.out.read_text(encoding="utf-8")

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Poll the entries until ``predicate`` holds or ``timeout`` passes; return them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.entries()
            if predicate(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def url(self, tag: str = "test", scheme: str = "fluent", **query: str) -> str:
        """The sink URL of this server."""
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://127.0.0.1:{self.port}/{tag}" + (f"?{options}" if options else "")


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's next stdout line, or "" when it ends or ``timeout`` passes."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()
