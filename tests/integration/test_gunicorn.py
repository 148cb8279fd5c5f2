"""Real gunicorn with uvicorn workers and aiolog in ``logconfig_dict``: nothing lost at SIGTERM.

Regression test for the workers' shutdown lines ("Finished server process [PID]", the
lifespan shutdown, the app's own) that aiolog lost while a stdlib ``FileHandler`` in the same
configuration kept them: the uvicorn worker resets SIGTERM to its default after the fork, and
uvicorn raises the signal again after its graceful shutdown, which killed the worker before
any exit hook ran. The bar is the stdlib handler: the aiolog file must hold every record the
stdlib file holds.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import free_port, in_ci

if in_ci():  # .ci/run installs the test extra: a missing package there is a failure
    import gunicorn  # noqa: F401
    import httpx
    import uvicorn_worker  # noqa: F401
else:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKERS = 2
REQUESTS = 24
RECORDS_PER_REQUEST = 25
#: What uvicorn and the app log in each worker from SIGTERM on, in this order.
SHUTDOWN_LINES = (
    ("uvicorn.error", "Shutting down"),
    ("uvicorn.error", "Waiting for application shutdown."),
    ("app", "app shutdown"),
    ("uvicorn.error", "Application shutdown complete."),
    ("uvicorn.error", "Finished server process [{pid}]"),
)

Line = tuple[int, str, str]  # (pid, logger, message)


def shutdown_lines(pid: int) -> list[tuple[str, str]]:
    """What worker ``pid`` logs from SIGTERM on, in order: (logger, message)."""
    return [(name, line.format(pid=pid)) for name, line in SHUTDOWN_LINES]


def shutdown_by_worker(lines: list[Line], workers: set[int]) -> dict[int, list[tuple[str, str]]]:
    """Each worker's shutdown lines among ``lines``, in the order they are in."""
    return {
        pid: [(n, m) for p, n, m in lines if p == pid and (n, m) in shutdown_lines(pid)]
        for pid in workers
    }


def logconfig(aiolog_out: Path, stdlib_out: Path) -> dict[str, Any]:
    """The issue's logconfig_dict: aiolog's queue handler and a stdlib FileHandler, side by side."""
    both = ["aiolog", "stdlib"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "aiolog.JSONFormatter"},
            "tabs": {"format": "%(process)d\t%(name)s\t%(message)s"},
        },
        "handlers": {
            "file": {"()": "aiolog.sink", "url": f"file:{aiolog_out}", "formatter": "json"},
            "aiolog": {
                "class": "aiolog.QueueHandler",
                "handlers": ["file"],
                "listener": "aiolog.QueueListener",
            },
            "stdlib": {
                "class": "logging.FileHandler",
                "filename": str(stdlib_out),
                "formatter": "tabs",
            },
        },
        # The uvicorn worker gives uvicorn.error and uvicorn.access gunicorn's handlers.
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": both, "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": both, "propagate": False},
        },
        "root": {"level": "INFO", "handlers": both},
    }


def read_stdlib(path: Path) -> list[Line]:
    """The stdlib file's complete records as (pid, logger, first line of the text)."""
    text = path.read_text()
    lines = []
    for line in text[: text.rfind("\n") + 1].splitlines():
        fields = line.split("\t", 2)
        if len(fields) == 3 and fields[0].isdigit():  # else a message's next line (traceback)
            lines.append((int(fields[0]), fields[1], fields[2]))
    return lines


def read_aiolog(path: Path) -> list[Line]:
    """The aiolog file's records as (pid, logger, first line of the message); all JSON."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["process"], r["logger"], r["message"].split("\n", 1)[0]) for r in records]


class Gunicorn:
    """``python -m gunicorn`` in its own session and temp dir, logging to two files."""

    def __init__(self, tmp_path: Path, worker_class: str) -> None:
        self.port = free_port()
        self.aiolog_out = tmp_path / "aiolog.jsonl"
        self.stdlib_out = tmp_path / "stdlib.log"
        config = tmp_path / "gunicorn.conf.py"
        config.write_text(
            f"pythonpath = {str(HERE)!r}\n"
            "control_socket_disable = True\n"
            "graceful_timeout = 10\n"  # a worker stuck at exit is killed well before stop()'s 30 s
            f"logconfig_dict = {logconfig(self.aiolog_out, self.stdlib_out)!r}\n"
        )
        # PYTHONPATH first: a run with PYTHONPATH=<another checkout> serves that aiolog.
        path = [p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "NO_COLOR": "1"}
        self.stderr_path = tmp_path / "gunicorn.stderr"
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", "-c", str(config), "-w", str(WORKERS)),
                    *("-k", worker_class, "-b", f"127.0.0.1:{self.port}", "gunicorn_app:app"),
                ],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its workers share its process group: see close()
            )

    def output(self) -> str:
        """gunicorn's stderr and the stdlib log so far, for assertion messages."""
        text = self.stderr_path.read_text()
        if self.stdlib_out.exists():
            text += "\n--- stdlib log ---\n" + self.stdlib_out.read_text()
        return text

    def wait_started(self, timeout: float) -> set[int]:
        """Wait until every worker logged "Application startup complete."; their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            if self.stdlib_out.exists():
                started = {
                    pid
                    for pid, name, message in read_stdlib(self.stdlib_out)
                    if name == "uvicorn.error" and message == "Application startup complete."
                }
                if len(started) == WORKERS:
                    return started
            time.sleep(0.02)
        raise AssertionError(f"gunicorn's workers did not start\n{self.output()}")

    def stop(self, timeout: float) -> int:
        """SIGTERM to the master, as a service manager stops it; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Kill the master and its workers (the process group it leads) if not yet reaped."""
        if self.proc.returncode is None:  # not reaped: the group id is still the master's
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(
    params=["uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker"],
    ids=["UvicornWorker", "UvicornH11Worker"],
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gunicorn, set[int]]]:
    """gunicorn with two uvicorn workers (uvloop if installed; asyncio + h11), both ready."""
    srv = Gunicorn(tmp_path, request.param)
    try:
        yield srv, srv.wait_started(30)
    finally:
        srv.close()


def get(port: int, req: int) -> tuple[int, int]:
    """``GET /log`` on a connection of its own (so both workers get requests); (status, pid)."""
    url = f"http://127.0.0.1:{port}/log?req={req}&n={RECORDS_PER_REQUEST}"
    response = httpx.get(url, headers={"Connection": "close"}, timeout=10)
    return response.status_code, int(response.text)


@pytest.mark.timeout(60)
def test_workers_shutdown_lines_and_request_records_reach_the_aiolog_file(
    server: tuple[Gunicorn, set[int]],
) -> None:
    """After SIGTERM the aiolog file has every request record and each worker's shutdown."""
    srv, workers = server
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda req: get(srv.port, req), range(REQUESTS)))
    assert [200] * REQUESTS == [status for status, _ in answers]
    assert workers >= {pid for _, pid in answers}

    assert 0 == srv.stop(30), srv.output()
    stdlib = read_stdlib(srv.stdlib_out)
    aiolog = read_aiolog(srv.aiolog_out)

    # Every request's records, exactly once each, from the worker that answered it.
    counts = collections.Counter(
        (pid, message)
        for pid, name, message in aiolog
        if name == "app" and message.startswith("req ")
    )
    expected = collections.Counter(
        (pid, f"req {req} rec {k}")
        for req, (_, pid) in enumerate(answers)
        for k in range(RECORDS_PER_REQUEST)
    )
    assert expected == counts
    access = [message for _, name, message in aiolog if name == "uvicorn.access"]
    assert REQUESTS == len(access)
    assert sorted(f"/log?req={req}&n={RECORDS_PER_REQUEST}" for req in range(REQUESTS)) == sorted(
        message.split('"GET ', 1)[1].split(" ", 1)[0] for message in access
    )

    # Each worker's shutdown lines, in order, in both files; then it died of SIGTERM.
    expected_shutdown = {pid: shutdown_lines(pid) for pid in workers}
    assert expected_shutdown == shutdown_by_worker(stdlib, workers)
    assert expected_shutdown == shutdown_by_worker(aiolog, workers)
    master = srv.proc.pid
    for pid in workers:
        assert (master, "gunicorn.error", f"Worker (pid:{pid}) was sent SIGTERM!") in aiolog

    # The bar: aiolog loses nothing the stdlib keeps, and adds nothing.
    assert [] == sorted((collections.Counter(stdlib) - collections.Counter(aiolog)).elements())
    assert [] == sorted((collections.Counter(aiolog) - collections.Counter(stdlib)).elements())


def docs_config() -> str:
    """The ``gunicorn.conf.py`` block of docs/gunicorn.md, as the page shows it."""
    page = (ROOT / "docs" / "gunicorn.md").read_text(encoding="utf-8")
    (config,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "logconfig" in b]
    assert config.startswith("# gunicorn.conf.py\n")
    return config


@pytest.mark.timeout(60)
def test_the_docs_gunicorn_conf_py_delivers_each_worker_s_shutdown(tmp_path: Path) -> None:
    """docs/gunicorn.md's gunicorn.conf.py, as it is: requests and shutdown lines in the file."""
    port = free_port()
    (tmp_path / "gunicorn.conf.py").write_text(
        docs_config()
        + f"\npythonpath = {str(HERE)!r}\ncontrol_socket_disable = True\n",  # test plumbing
        encoding="utf-8",
    )
    path = [p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "NO_COLOR": "1"}
    with (tmp_path / "gunicorn.stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
                *("-b", f"127.0.0.1:{port}", "gunicorn_app:app"),
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    out = tmp_path / "logs" / "app.jsonl"
    try:
        deadline = time.monotonic() + 30
        started: set[int] = set()
        while len(started) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "gunicorn.stderr").read_text()
            if out.exists():
                started = {
                    pid
                    for pid, name, message in read_aiolog_complete(out)
                    if (name, message) == ("uvicorn.error", "Application startup complete.")
                }
            time.sleep(0.02)
        assert 2 == len(started), (tmp_path / "gunicorn.stderr").read_text()
        answers = [get(port, req) for req in range(4)]
        assert [200] * 4 == [status for status, _ in answers]
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(30)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    lines = read_aiolog(out)
    assert {pid: shutdown_lines(pid) for pid in started} == shutdown_by_worker(lines, started)
    for req, (_, pid) in enumerate(answers):
        got = [m for p, n, m in lines if p == pid and n == "app" and m.startswith(f"req {req} ")]
        assert [f"req {req} rec {k}" for k in range(RECORDS_PER_REQUEST)] == got


def read_aiolog_complete(path: Path) -> list[Line]:
    """:func:`read_aiolog` of the whole lines written so far (a worker may be mid-line)."""
    text = path.read_text()
    records = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
    return [(r["process"], r["logger"], r["message"].split("\n", 1)[0]) for r in records]
