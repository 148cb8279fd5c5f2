"""configure(): one-line wiring, defaults from the environment, errors, reconfigure, exit."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog import QueueHandler
from aiolog.sinks.stream import StreamSink
from aiolog.testing import CaptureSink


def app_records(sink: CaptureSink) -> list[logging.LogRecord]:
    return [r for r in sink.records if r.name != "aiolog"]


def test_configure_installs_one_queue_handler_on_root() -> None:
    """The root logger gets one aiolog QueueHandler; records reach the sinks."""
    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    root = logging.getLogger()
    assert [pipeline.handler] == root.handlers
    assert isinstance(pipeline.handler, QueueHandler)
    logging.getLogger("app").info("hello %s", "world")
    assert pipeline.flush()
    assert ["hello world"] == sink.messages
    assert aiolog.get_pipeline() is pipeline


def test_default_level_is_info_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """INFO by default; AIOLOG_LEVEL sets it; the level argument wins over both."""
    aiolog.configure([CaptureSink()])
    assert logging.INFO == logging.getLogger().level
    monkeypatch.setenv("AIOLOG_LEVEL", "debug")
    aiolog.configure([CaptureSink()])
    assert logging.DEBUG == logging.getLogger().level
    aiolog.configure([CaptureSink()], level="ERROR")
    assert logging.ERROR == logging.getLogger().level


def test_shutdown_restores_the_root_level_configure_changed() -> None:
    """configure() lowers DEBUG to INFO; shutdown() puts DEBUG back, after a reconfigure too."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    aiolog.configure([CaptureSink()], level="INFO")
    assert logging.INFO == root.level
    aiolog.configure([CaptureSink()], level="WARNING")
    assert logging.WARNING == root.level
    assert aiolog.shutdown()
    assert logging.DEBUG == root.level


def test_shutdown_keeps_a_root_level_set_after_configure() -> None:
    """A level the application set after configure() is its own: shutdown() leaves it."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    aiolog.configure([CaptureSink()], level="INFO")
    root.setLevel(logging.ERROR)
    assert aiolog.shutdown()
    assert logging.ERROR == root.level


def test_default_sink_is_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sinks and AIOLOG_SINKS, records go to stderr."""
    monkeypatch.delenv("AIOLOG_SINKS", raising=False)
    pipeline = aiolog.configure()
    assert ["stderr"] == list(pipeline.stats()["sinks"])
    assert isinstance(pipeline.sinks[0], StreamSink)


def test_sinks_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AIOLOG_SINKS is a comma-separated list of URLs."""
    monkeypatch.setenv("AIOLOG_SINKS", f"stdout, file:{tmp_path}/a.jsonl")
    pipeline = aiolog.configure()
    assert ["stdout", f"file:{tmp_path}/a.jsonl"] == list(pipeline.stats()["sinks"])


def test_env_format_applies_to_url_sinks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AIOLOG_FORMAT picks the format of sinks built from URLs."""
    monkeypatch.setenv("AIOLOG_FORMAT", "logfmt")
    pipeline = aiolog.configure(["stdout"])
    logging.getLogger("app").warning("hello")
    assert pipeline.flush()
    out = capsys.readouterr().out
    assert "level=warning" in out
    assert "msg=hello" in out


def test_explicit_url_format_wins_over_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sink's own ?format= beats configure(format=...)."""
    pipeline = aiolog.configure(["stdout?format=json"], format="logfmt")
    logging.getLogger("app").warning("hello")
    assert pipeline.flush()
    line = capsys.readouterr().out.strip()
    assert "hello" == json.loads(line)["message"]


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"sinks": ["kafka://broker:9092"]}, "kafka"),
        ({"sinks": ["stderr"], "level": "LOUD"}, "LOUD"),
        ({"sinks": ["stderr"], "format": "xml"}, "xml"),
        ({"sinks": ["stderr"], "overflow": "explode"}, "explode"),
        ({"sinks": ["stderr"], "queue_size": 0}, "queue_size"),
        ({"sinks": ["stderr"], "queue_bytes": 0}, "queue_bytes"),
        ({"sinks": ["stderr"], "stall_timeout": -1}, "stall_timeout"),
        ({"sinks": ["stderr"], "block_timeout": "x"}, "block_timeout"),
        ({"sinks": ["stderr"], "exit_timeout": float("nan")}, "exit_timeout"),
        ({"sinks": ["stderr"], "sink_buffer": 0}, "sink_buffer"),
        ({"sinks": ["stderr"], "sink_buffer_bytes": -1}, "sink_buffer_bytes"),
        ({"sinks": ["file:/proc/aiolog-cannot-write/x.log"]}, "/proc/aiolog-cannot-write"),
        ({"sinks": ["stderr?format=yaml"]}, "yaml"),
        ({"sinks": [42]}, "42"),
    ],
)
def test_bad_configuration_names_the_culprit(kwargs: dict[str, Any], culprit: str) -> None:
    """Each bad setting raises ValueError naming it, and nothing is changed."""
    before = logging.getLogger().handlers[:]
    with pytest.raises(ValueError, match=culprit):
        aiolog.configure(**kwargs)
    assert before == logging.getLogger().handlers
    assert aiolog.get_pipeline() is None


def test_existing_root_handlers_keep_working_behind_the_queue() -> None:
    """A handler already on the root logger receives records via the listener."""
    existing = CaptureSink("existing")
    root = logging.getLogger()
    root.handlers = [existing]
    pipeline = aiolog.configure([CaptureSink("new")])
    assert [pipeline.handler] == root.handlers
    logging.getLogger("app").info("both")
    assert pipeline.flush()
    assert ["both"] == existing.messages
    aiolog.shutdown()
    assert [existing] == root.handlers


def test_stats_shape() -> None:
    """stats() has the documented queue and per-sink counters."""
    sink = CaptureSink("mem")
    pipeline = aiolog.configure([sink])
    for i in range(10):
        logging.getLogger("app").info("n=%d", i)
    assert pipeline.flush()
    stats = pipeline.stats()
    assert {"enqueued", "dropped", "depth", "high_water"} == set(stats["queue"])
    assert 10 == stats["queue"]["enqueued"]
    assert 0 == stats["queue"]["dropped"]
    assert 0 == stats["queue"]["depth"]
    expected = {
        "offered": 10,
        "written": 10,
        "filtered": 0,
        "dropped": 0,
        "dropped_stalled": 0,
        "dropped_error": 0,
        "dropped_deadline": 0,
        "buffered": 0,
        "buffered_bytes": 0,
        "stalled": False,
        "notices": 0,
        "errors": 0,
        "last_error": None,
    }
    assert expected == stats["sinks"]["mem"]


def test_queue_overflow_is_counted_exactly() -> None:
    """With the sink stalled, the queue bound and policy hold, with exact counts."""
    sink = CaptureSink("mem")
    sink.addFilter(lambda r: r.name != "aiolog")
    pipeline = aiolog.configure([sink], queue_size=100, overflow="drop_newest")
    pipeline.listener.stop()  # nothing drains: the queue alone takes the load
    for i in range(250):
        logging.getLogger("app").info("n=%d", i)
    stats = pipeline.stats()["queue"]
    assert 100 == stats["enqueued"]
    assert 150 == stats["dropped"]
    assert 100 == stats["depth"]
    assert 100 == stats["high_water"]


def test_asyncio_logger_is_routed() -> None:
    """Records of the asyncio logger go through the pipeline."""
    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    logging.getLogger("asyncio").error("loop trouble")
    assert pipeline.flush()
    assert ["loop trouble"] == sink.messages


def test_warnings_are_captured() -> None:
    """warnings.warn becomes a record on py.warnings."""
    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    assert pipeline.flush()
    (record,) = sink.records
    assert "py.warnings" == record.name
    assert "careful" in record.message


def test_captured_warnings_read_no_source_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warning raised on the loop becomes a record without linecache reading the file."""
    import linecache

    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    reads: list[str] = []
    monkeypatch.setattr(linecache, "getline", lambda filename, *a, **k: reads.append(filename))

    async def main() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("on the loop", UserWarning, stacklevel=1)

    asyncio.run(main())
    monkeypatch.undo()
    assert pipeline.flush()
    assert [] == reads
    (record,) = sink.records
    assert record.message.startswith(f"{__file__}:")
    assert "UserWarning: on the loop" in record.message


@pytest.mark.parametrize("attempt", range(5))
def test_reconfigure_loses_nothing_under_load(attempt: int) -> None:
    """Records logged by a busy thread while configure() is called again are all kept."""
    first = CaptureSink("first")
    second = CaptureSink("second")
    first.addFilter(lambda r: r.name == "app")
    second.addFilter(lambda r: r.name == "app")
    # The producer thread outruns the listener on a loaded machine: "block" makes it wait
    # for room instead of dropping, so only the reconfigure itself could lose a record.
    settings: dict[str, Any] = {"overflow": "block", "block_timeout": 30}
    aiolog.configure([first], **settings)
    started = threading.Event()
    stop = threading.Event()
    sent: list[int] = []

    def producer() -> None:
        log = logging.getLogger("app")
        i = 0
        after_swap = 0
        while after_swap < 1000:  # keeps logging through the swap, then 1000 more
            if stop.is_set():
                after_swap += 1
            log.info("%d", i)
            sent.append(i)
            i += 1
            if i == 1000:
                started.set()

    t = threading.Thread(target=producer)
    t.start()
    assert started.wait(10)
    old = aiolog.get_pipeline()
    assert old is not None
    pipeline = aiolog.configure([second], **settings)
    stop.set()
    t.join(30)
    assert not t.is_alive()
    assert pipeline.flush()
    got = [int(m) for m in first.messages] + [int(m) for m in second.messages]
    details = (old.stats(), pipeline.stats())
    assert len(sent) == len(got), details
    assert sent == sorted(got), details
    # The old pipeline may have written some of them (or none: its queue is handed over
    # before its listener stops); the new one writes the rest.
    assert second.messages


def test_stop_detaches_and_is_idempotent() -> None:
    """Pipeline.stop() drains, removes the handler, and may be called again."""
    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    logging.getLogger("app").info("last words")
    assert pipeline.stop()
    assert pipeline.stop()
    assert pipeline.handler not in logging.getLogger().handlers
    assert ["last words"] == sink.messages
    assert aiolog.get_pipeline() is None


def test_pipeline_as_context_manager() -> None:
    """Leaving the with block stops the pipeline."""
    sink = CaptureSink()
    with aiolog.configure([sink]):
        logging.getLogger("app").info("inside")
    assert ["inside"] == sink.messages
    assert aiolog.get_pipeline() is None


def test_sink_handler_given_by_the_user_is_not_closed() -> None:
    """Handlers passed as objects belong to the caller: stop() flushes but does not close."""
    stream_handler = logging.StreamHandler(sys.stdout)
    closed: list[bool] = []
    stream_handler.close = lambda: closed.append(True)  # type: ignore[method-assign]
    aiolog.configure([stream_handler])
    aiolog.shutdown()
    assert [] == closed


def test_logging_from_many_tasks_with_blockbuster(blockbuster: Any) -> None:
    """Logging from a thousand tasks makes no blocking call on the loop."""
    sink = CaptureSink()
    pipeline = aiolog.configure([sink])
    log = logging.getLogger("app")

    async def worker(i: int) -> None:
        log.info("task %d", i)
        await asyncio.sleep(0)
        log.info("task %d again", i)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(1000)))
        assert await pipeline.aflush()

    asyncio.run(main())
    assert 2000 == len(app_records(sink))
    names = collections.Counter(r.taskName for r in app_records(sink))
    assert 1000 == len(names)
    assert {2} == set(names.values())
    assert all(name.startswith("Task-") for name in names)


# -- the exit drain, in real subprocesses -----------------------------------------------------

EXIT_SCRIPT = """
import asyncio, logging, os, signal, sys
import aiolog

aiolog.configure(["file:{out}"], level="INFO")
log = logging.getLogger("app")
mode = sys.argv[1]

async def main():
    for i in range(5000):
        log.info("record %d", i)
    if mode == "sigterm":
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
    if mode == "exit-in-loop":
        sys.exit(3)

asyncio.run(main())
"""


@pytest.mark.parametrize(("mode", "code"), [("normal", 0), ("sigterm", 143), ("exit-in-loop", 3)])
def test_records_are_drained_at_exit(tmp_path: Path, mode: str, code: int) -> None:
    """Everything logged before exit is in the file: normal exit, SIGTERM->SystemExit, sys.exit."""
    out = tmp_path / "app.jsonl"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT.format(out=out)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, str(script), mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert code == proc.returncode, proc.stderr
    lines = out.read_text().splitlines()
    messages = [json.loads(line)["message"] for line in lines]
    assert [f"record {i}" for i in range(5000)] == messages


SIGTERM_DEFAULT = """
import logging, os, signal
import aiolog

aiolog.configure(["file:{out}"], level="INFO")
log = logging.getLogger("app")
for i in range(5000):
    log.info("record %d", i)
os.kill(os.getpid(), signal.SIGTERM)
"""


def test_default_sigterm_drains_then_dies_of_the_signal(tmp_path: Path) -> None:
    """With no SIGTERM handler of the app's own, the queue drains and the status stays -15."""
    out = tmp_path / "app.jsonl"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SIGTERM_DEFAULT.format(out=out)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert -15 == proc.returncode, proc.stderr
    messages = [json.loads(line)["message"] for line in out.read_text().splitlines()]
    assert [f"record {i}" for i in range(5000)] == messages
