"""Nothing is lost with default settings: bursts, producers, every way out of a process.

Each test runs a real program in a fresh interpreter, as a user would, with ``configure()``
or dictConfig defaults and nothing tuned, and reads back the file it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_program(
    tmp_path: Path, source: str, *args: str, timeout: float = 120, **format_args: Any
) -> subprocess.CompletedProcess[str]:
    """Write ``source`` (formatted with ``out``, the output file) to a script and run it."""
    script = tmp_path / f"program-{len(list(tmp_path.glob('program-*.py')))}.py"
    script.write_text(textwrap.dedent(source).format(**format_args))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file, parsed (a torn line fails the test)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def app_lines(path: Path) -> list[dict[str, Any]]:
    """The application's lines: aiolog's own notices left out."""
    return [line for line in read_lines(path) if line["logger"] != "aiolog"]


ONE_TASK = """
import asyncio, logging
import aiolog

aiolog.configure(["file:{out}"])
log = logging.getLogger("app")

async def main():
    for i in range(100_000):
        log.info("record %d", i)

asyncio.run(main())  # no stop(): the exit drain writes the rest
"""


def test_a_burst_of_100k_records_from_one_task_all_reach_the_file(tmp_path: Path) -> None:
    """One task logs 100 000 records in a loop and the program ends: all are on disk, in order."""
    out = tmp_path / "app.jsonl"
    proc = run_program(tmp_path, ONE_TASK, out=out)
    assert 0 == proc.returncode, proc.stderr
    assert "" == proc.stderr
    assert [f"record {i}" for i in range(100_000)] == [line["message"] for line in app_lines(out)]
    assert [] == [line for line in read_lines(out) if line["logger"] == "aiolog"]


TASKS_AND_THREADS = """
import asyncio, json, logging, threading
import aiolog

pipeline = aiolog.configure(["file:{out}"], overflow="block")
log = logging.getLogger("app")
start = threading.Barrier(9)

def thread_producer(n):
    start.wait()
    for i in range(20_000):
        log.info("thread %d record %d", n, i)

async def task_producer(n):
    for i in range(2_000):
        log.info("task %d record %d", n, i)
        if i % 500 == 0:
            await asyncio.sleep(0)

async def main():
    threads = [threading.Thread(target=thread_producer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    start.wait()
    await asyncio.gather(*(task_producer(n) for n in range(10)))
    for t in threads:
        await asyncio.to_thread(t.join)

asyncio.run(main())
ok = pipeline.stop(60)
print(json.dumps({{"ok": ok, "stats": pipeline.stats()}}))
"""


def test_tasks_and_blocking_threads_at_once_lose_nothing(tmp_path: Path) -> None:
    """10 tasks and 8 threads (overflow="block") log 180 000 records at once: all on disk."""
    out = tmp_path / "app.jsonl"
    proc = run_program(tmp_path, TASKS_AND_THREADS, out=out, timeout=240)
    assert 0 == proc.returncode, proc.stderr
    report = json.loads(proc.stdout)
    lines = app_lines(out)
    expected = {f"thread {n} record {i}" for n in range(8) for i in range(20_000)}
    expected |= {f"task {n} record {i}" for n in range(10) for i in range(2_000)}
    messages = [line["message"] for line in lines]
    assert len(expected) == len(messages)
    assert expected == set(messages)
    for n in range(8):  # each producer's records in its own order
        mine = [m for m in messages if m.startswith(f"thread {n} ")]
        assert [f"thread {n} record {i}" for i in range(20_000)] == mine
    assert report["ok"] is True
    stats = report["stats"]
    assert 0 == stats["queue"]["dropped"]
    sink = stats["sinks"][f"file:{out}"]
    assert 180_000 == sink["offered"] == sink["written"]
    assert (0, 0, 0) == (sink["dropped"], sink["filtered"], sink["buffered"])


DICTCONFIG_SHUTDOWN = """
import logging, logging.config
logging.config.dictConfig({{
    "version": 1,
    "handlers": {{
        "file": {{"()": "aiolog.sink", "url": "file:{out}"}},
        "queue": {{
            "class": "aiolog.QueueHandler",
            "handlers": ["file"],
            "listener": "aiolog.QueueListener",
        }},
    }},
    "root": {{"level": "INFO", "handlers": ["queue"]}},
}})
log = logging.getLogger("app")
for i in range(5000):
    log.info("record %d", i)
logging.shutdown()
"""


def test_dictconfig_then_logging_shutdown_loses_nothing_in_20_runs(tmp_path: Path) -> None:
    """dictConfig, 5 000 records, logging.shutdown(): every record in each of 20 processes."""

    def one(n: int) -> tuple[int, list[str], str]:
        out = tmp_path / f"run-{n}.jsonl"
        run_dir = tmp_path / f"run-{n}"
        run_dir.mkdir()
        proc = run_program(run_dir, DICTCONFIG_SHUTDOWN, out=out)
        return proc.returncode, [line["message"] for line in app_lines(out)], proc.stderr

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(20)))
    expected = [f"record {i}" for i in range(5000)]
    for code, messages, stderr in results:
        assert (0, "") == (code, stderr)
        assert expected == messages


CHILDREN = """
import logging, multiprocessing, os, sys
import aiolog

def work(n):
    if multiprocessing.get_start_method() != "fork":
        aiolog.configure(["file:{out}"])  # a spawned child starts from scratch
    log = logging.getLogger("child")
    for i in range(1000):
        log.info("child %d record %d", n, i)
    return n

if __name__ == "__main__":
    method, kind = sys.argv[1], sys.argv[2]
    multiprocessing.set_start_method(method)
    aiolog.configure(["file:{out}"])
    if kind == "pool":
        with multiprocessing.Pool(2) as pool:  # __exit__ terminates the workers (SIGTERM)
            assert list(range(8)) == pool.map(work, range(8), chunksize=1)
    else:
        children = [multiprocessing.Process(target=work, args=(n,)) for n in range(4)]
        for child in children:
            child.start()
        for child in children:
            child.join()
            assert 0 == child.exitcode
"""


@pytest.mark.parametrize(
    ("method", "kind", "children"),
    [
        ("fork", "process", 4),
        ("fork", "pool", 8),
        ("spawn", "process", 4),
        ("forkserver", "process", 4),
    ],
)
def test_multiprocessing_children_deliver_every_record(
    tmp_path: Path, method: str, kind: str, children: int
) -> None:
    """Children that end with os._exit (multiprocessing's way) still drain their records."""
    out = tmp_path / "app.jsonl"
    proc = run_program(tmp_path, CHILDREN, method, kind, out=out)
    assert 0 == proc.returncode, proc.stderr
    assert "" == proc.stderr
    messages = sorted(line["message"] for line in app_lines(out))
    expected = sorted(f"child {n} record {i}" for n in range(children) for i in range(1000))
    assert expected == messages


# The child waits on signal.set_wakeup_fd, as an event loop does (gunicorn's and uvicorn's
# workers): a SIGTERM that lands just before a plain time.sleep() began would only be seen
# when the sleep ends (CPython checks for signals between bytecodes, not inside the sleep).
SIGTERM_RESET_CHILD = """
import logging, os, select, signal, sys
import aiolog

aiolog.configure(["file:{out}"])
log = logging.getLogger("app")
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:  # a worker: resets what it inherited, as gunicorn's do
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for i in range(20_000):
        log.info("child record %d", i)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    os.write(ready_w, b"x")
    while True:
        select.select([wake_r], [], [])
        os.read(wake_r, 64)
os.read(ready_r, 1)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_that_resets_sigterm_still_drains(tmp_path: Path) -> None:
    """A forked child sets SIGTERM back to SIG_DFL, then gets it: its records still arrive."""
    out = tmp_path / "app.jsonl"
    proc = run_program(tmp_path, SIGTERM_RESET_CHILD, out=out)
    assert 0 == proc.returncode, proc.stderr
    assert "15" == proc.stdout.strip()  # it still died of the signal
    # (3.12+ also log a DeprecationWarning about fork() with threads, as py.warnings.)
    messages = [line["message"] for line in read_lines(out) if line["logger"] == "app"]
    assert [f"child record {i}" for i in range(20_000)] == messages


LOSS_AT_EXIT = """
import logging
import aiolog

aiolog.configure(["file:{out}"], queue_size=10)  # far too small: the burst overflows
log = logging.getLogger("app")
for i in range(5000):
    log.info("record %d", i)
"""


def test_a_loss_is_said_on_stderr_at_exit(tmp_path: Path) -> None:
    """When records were lost and stderr is not a sink, one line on stderr says so."""
    out = tmp_path / "app.jsonl"
    proc = run_program(tmp_path, LOSS_AT_EXIT, out=out)
    assert 0 == proc.returncode, proc.stderr
    lines = proc.stderr.splitlines()
    assert 1 == len(lines), proc.stderr
    assert lines[0].startswith("aiolog: records were lost: 'queue': ")
    assert "queue overflow" in lines[0]
    written = app_lines(out)
    overflow = int(lines[0].split("'queue': ")[1].split()[0])
    assert 5000 == len(written) + overflow  # exact
    notices = [line for line in read_lines(out) if line["logger"] == "aiolog"]
    assert notices  # and the file says it too
    assert overflow == sum(n["aiolog_lost"]["queue"]["queue_overflow"] for n in notices)


HUNG_HANDLER_AT_EXIT = """
import logging, threading
import aiolog

class HungHandler(logging.Handler):
    def emit(self, record):
        threading.Event().wait()  # never returns, holding the handler's lock

aiolog.configure([HungHandler(), "file:{out}"], exit_timeout=1)
logging.getLogger("app").warning("to both")
"""


def test_a_handler_stuck_in_emit_does_not_hang_the_exit(tmp_path: Path) -> None:
    """Exit waits exit_timeout for a plain handler stuck in emit(), then ends (not forever).

    Regression: the drain gave up after exit_timeout, then ``logging.shutdown()`` waited
    forever for the lock the stuck ``emit()`` held.
    """
    out = tmp_path / "app.jsonl"
    started = time.monotonic()
    proc = run_program(tmp_path, HUNG_HANDLER_AT_EXIT, out=out, timeout=30)
    assert 0 == proc.returncode, proc.stderr
    assert time.monotonic() - started < 20  # exit_timeout is 1 s; forever before the fix
    assert "aiolog: records were lost: 'HungHandler': 1 deadline\n" == proc.stderr
    assert ["to both"] == [line["message"] for line in app_lines(out)]  # the other sink


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 10 ms until it holds; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_stalled_peer_costs_the_others_nothing_and_says_its_loss_on_recovery(
    tmp_path: Path,
) -> None:
    """Defaults: a TCP peer that stops reading sheds after stall_timeout, the file sink gets
    every record, and once the peer reads again its own output carries the loss notice."""
    import asyncio
    import logging

    import aiolog
    from tests.integration.peers import tcp_peer

    out = tmp_path / "app.jsonl"
    total = 20_000  # twice a sink buffer
    with tcp_peer(stall=True) as peer:
        tcp = f"tcp://127.0.0.1:{peer.port}"
        pipeline = aiolog.configure([tcp, f"file:{out}"])
        log = logging.getLogger("app")
        ticks = 0

        async def app() -> None:
            nonlocal ticks
            payload = "y" * 1000
            for i in range(total):
                log.info("%d %s", i, payload)
                if i % 100 == 0:
                    await asyncio.sleep(0)
                    ticks += 1

        asyncio.run(app())
        assert total // 100 == ticks  # logging never blocked the loop

        def sinks() -> dict[str, Any]:
            result: dict[str, Any] = pipeline.stats()["sinks"]
            return result

        # The file gets everything while the peer reads nothing (one stall_timeout later).
        assert wait_until(lambda: total == sinks()[f"file:{out}"]["written"], 30), sinks()
        stats = sinks()
        assert 0 == stats[f"file:{out}"]["dropped"]
        assert stats[tcp]["stalled"] is True
        assert stats[tcp]["dropped_stalled"] > 0
        assert b"aiolog lost" not in peer.data
        peer.resume()
        assert peer.wait_for(lambda p: b"aiolog lost" in p.data, 30), sinks()
        log.info("after recovery")
        assert pipeline.flush(30) is False  # the shed records stay lost
        assert peer.wait_for(lambda p: b"after recovery" in p.data, 30)
        assert pipeline.stop(10) is False
        stats = sinks()
    sent = [json.loads(line) for line in peer.lines()]
    notices = [line for line in sent if line["logger"] == "aiolog"]
    records = [line for line in sent if line["logger"] != "aiolog"]
    tcp_stats = stats[tcp]
    assert total + 1 == tcp_stats["offered"]
    assert tcp_stats["offered"] == tcp_stats["written"] + tcp_stats["dropped"]
    assert tcp_stats["dropped"] == tcp_stats["dropped_stalled"]
    assert len(records) == tcp_stats["written"]
    assert 0 == tcp_stats["buffered"]
    assert {tcp: {"stalled": tcp_stats["dropped_stalled"]}} == notices[0]["aiolog_lost"]
    assert "after recovery" == records[-1]["message"]
    numbers = [int(r["message"].split()[0]) for r in records[:-1]]
    assert numbers == sorted(numbers)  # what it kept, in order
    assert total + 1 == len(app_lines(out))
