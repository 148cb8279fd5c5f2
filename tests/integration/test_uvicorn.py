"""Real uvicorn with examples/logging.yaml: access, error and app logs through aiolog."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("yaml")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEQUENTIAL = 10
CONCURRENT = 20


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """uvicorn in a child process; its stderr lines are collected by a reader thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "Application startup complete" in line:
                self.started.set()
        self.started.set()  # the process ended: let the waiter look

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Kill the process if it still runs; close the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def log_config(tmp_path: Path) -> tuple[Path, Path]:
    """examples/logging.yaml with its JSON file moved into the test's tmp dir."""
    out = tmp_path / "logs" / "app.jsonl"
    text = (ROOT / "examples" / "logging.yaml").read_text()
    assert "file:logs/app.jsonl" in text
    config = tmp_path / "logging.yaml"
    config.write_text(text.replace("file:logs/app.jsonl", f"file:{out}"))
    return config, out


@pytest.fixture(params=["asyncio", "uvloop"])
def server(
    request: pytest.FixtureRequest, log_config: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[Server, int, Path]]:
    """uvicorn serving examples/asgi_app.py with the YAML logging config, ready."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    config, out = log_config
    port = free_port()
    args = ["asgi_app:app", "--app-dir", str(ROOT / "examples"), "--host", "127.0.0.1"]
    args += ["--port", str(port), "--log-config", str(config), "--loop", request.param]
    srv = Server(args, cwd=tmp_path)
    try:
        assert srv.started.wait(30), "".join(srv.lines)
        assert srv.proc.poll() is None, "".join(srv.lines)
        yield srv, port, out
    finally:
        srv.close()


async def concurrent_requests(base: str, paths: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=base) as client:
        responses = await asyncio.gather(*(client.get(path) for path in paths))
    return [r.status_code for r in responses]


def test_access_error_and_app_logs_land_in_the_json_file(server: tuple[Server, int, Path]) -> None:
    """Every access and app record is in the file after SIGTERM, with task context."""
    srv, port, out = server
    base = f"http://127.0.0.1:{port}"
    paths = [f"/items/{i}" for i in range(SEQUENTIAL + CONCURRENT)]
    with httpx.Client(base_url=base) as client:
        statuses = [client.get(path).status_code for path in paths[:SEQUENTIAL]]
    statuses += asyncio.run(concurrent_requests(base, paths[SEQUENTIAL:]))
    assert [200] * len(paths) == statuses

    # uvicorn shuts down gracefully, then raises SIGTERM again with the default disposition;
    # aiolog's handler for that drains the queue first, then lets the signal kill it.
    assert -signal.SIGTERM == srv.stop(), "".join(srv.lines)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_logger: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in records:
        by_logger[record["logger"]].append(record)

    access = [r["message"] for r in by_logger["uvicorn.access"]]
    assert sorted(f'"GET {path} HTTP/1.1" 200' for path in paths) == sorted(
        message.split(" - ", 1)[1] for message in access
    )

    handling = {r["message"]: r for r in by_logger["app"] if r["message"].startswith("handling")}
    assert {f"handling GET {path}" for path in paths} == set(handling)
    for record in handling.values():
        assert record["task"] is not None
        assert record["coro"].endswith("run_asgi")
        assert record["request_id"].startswith("r-")

    lookups = [r for r in by_logger["app"] if r["message"].startswith("looked up")]
    assert {f"lookup:{path}" for path in paths} == {r["task"] for r in lookups}
    assert {"lookup"} == {r["coro"] for r in lookups}

    handled = {r["path"]: r for r in by_logger["app.events"]}
    assert set(paths) == set(handled)
    for path, record in handled.items():
        assert "request handled" == record["message"]
        assert {"item": path.rsplit("/", 1)[1], "tags": ["a", "b"]} == record["found"]
        # structlog's and logging's records of one request share its request_id
        assert handling[f"handling GET {path}"]["request_id"] == record["request_id"]
        assert record["coro"].endswith("run_asgi")

    app_lifecycle = [r["message"] for r in by_logger["app"] if r["message"].startswith("app ")]
    assert ["app starting", "app stopping"] == app_lifecycle
    errors = [r["message"] for r in by_logger["uvicorn.error"]]
    assert "Application startup complete." in errors
    assert any(m.startswith("Finished server process") for m in errors)  # the very last one

    stderr = "".join(srv.lines)
    assert "Application startup complete." in stderr  # the stderr sink, as text
    assert "request handled" in stderr
