"""dictConfig: the stdlib queue-handler form on every Python, options, errors, reconfigure, exit."""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiolog import QueueHandler, QueueListener, RecordQueue
from aiolog import dictconfig as dictconfig_module
from aiolog.testing import CaptureSink

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_configured_handlers() -> Iterator[None]:
    """Close, newest first, the handlers a test's dictConfig made; restore SIGTERM."""
    before = set(logging._handlerList)  # type: ignore[attr-defined]
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        for ref in reversed(logging._handlerList[:]):  # type: ignore[attr-defined]
            handler = ref()
            if ref not in before and handler is not None:
                handler.close()
        dictconfig_module._orphans.clear()
        signal.signal(signal.SIGTERM, sigterm)


def config(
    *targets: tuple[str, Any], queue_name: str = "queue", **queue_keys: Any
) -> dict[str, Any]:
    """A dictConfig dict: the given target handlers behind one aiolog.QueueHandler on root."""
    handlers: dict[str, Any] = {name: {"()": lambda sink=sink: sink} for name, sink in targets}
    handlers[queue_name] = {
        "class": "aiolog.QueueHandler",
        "handlers": [name for name, _ in targets],
        "listener": "aiolog.QueueListener",
        **queue_keys,
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": handlers,
        "root": {"level": "INFO", "handlers": [queue_name]},
    }


def queue_handler(name: str = "queue") -> QueueHandler:
    handler = logging._handlers[name]  # type: ignore[attr-defined]
    assert isinstance(handler, QueueHandler)
    return handler


def listener_of(handler: QueueHandler) -> QueueListener:
    listener = handler.listener
    assert isinstance(listener, QueueListener)
    return listener


def causes(exc: BaseException) -> str:
    """The messages of an exception and of everything that caused it, in one string."""
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def test_issue_dict_delivers_to_a_json_file_without_a_further_call(tmp_path: Path) -> None:
    """The issue's dict, unchanged: records land in the JSON file, the listener runs."""
    out = tmp_path / "logs" / "app.jsonl"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "file": {"()": "aiolog.sink", "url": f"file:{out}", "formatter": "json"},
                "queue": {
                    "class": "aiolog.QueueHandler",
                    "handlers": ["file"],
                    "listener": "aiolog.QueueListener",
                },
            },
            "formatters": {"json": {"()": "aiolog.JSONFormatter"}},
            "root": {"level": "INFO", "handlers": ["queue"]},
        }
    )
    handler = queue_handler()
    listener = listener_of(handler)
    assert listener.running
    for i in range(100):
        logging.getLogger("app").info("record %d", i)
    assert listener.flush(5)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f"record {i}" for i in range(100)] == [line["message"] for line in lines]
    assert {"app"} == {line["logger"] for line in lines}


def test_queue_is_bounded_and_shared_with_the_listener() -> None:
    """The handler and the listener share one bounded RecordQueue, never an unbounded Queue."""
    logging.config.dictConfig(config(("sink", CaptureSink())))
    handler = queue_handler()
    assert isinstance(handler.queue, RecordQueue)
    assert 200_000 == handler.queue.maxsize
    assert 128 * 1024 * 1024 == handler.queue.max_bytes
    assert "drop_newest" == handler.queue.overflow
    assert handler.queue is listener_of(handler).queue


def test_listener_key_may_be_left_out() -> None:
    """Without a "listener" key the handler still gets a running aiolog listener."""
    sink = CaptureSink()
    cfg = config(("sink", sink))
    del cfg["handlers"]["queue"]["listener"]
    logging.config.dictConfig(cfg)
    listener = listener_of(queue_handler())
    assert listener.running
    logging.getLogger("app").info("hello")
    assert listener.flush(5)
    assert ["hello"] == sink.messages


@pytest.mark.parametrize(
    ("keys", "maxsize", "overflow"),
    [
        ({"maxsize": 5000, "overflow": "drop_oldest"}, 5000, "drop_oldest"),
        ({"maxsize": 7}, 7, "drop_newest"),
        ({"queue": {"()": "aiolog.RecordQueue", "maxsize": 9, "overflow": "block"}}, 9, "block"),
    ],
    ids=["handler-keys", "maxsize-only", "queue-dict"],
)
def test_queue_size_and_overflow_from_the_dict(
    keys: dict[str, Any], maxsize: int, overflow: str
) -> None:
    """maxsize/overflow keys and the queue dict form take effect on every Python."""
    logging.config.dictConfig(config(("sink", CaptureSink()), **keys))
    q = queue_handler().queue
    assert isinstance(q, RecordQueue)
    assert (maxsize, overflow) == (q.maxsize, q.overflow)


def test_listener_options_through_the_factory() -> None:
    """{"()": "aiolog.dictconfig.listener", ...} tunes the listener."""
    cfg = config(
        ("sink", CaptureSink()),
        listener={
            "()": "aiolog.dictconfig.listener",
            "max_batch": 7,
            "buffer_size": 99,
            "buffer_bytes": 4096,
            "linger": 0.004,
            "idle_after": 0.5,
        },
    )
    logging.config.dictConfig(cfg)
    listener = listener_of(queue_handler())
    assert (7, 99, 4096) == (listener.max_batch, listener.buffer_size, listener.buffer_bytes)
    assert (0.004, 0.5) == (listener.linger, listener.idle_after)
    assert listener.running


def test_queue_handler_configured_before_its_targets() -> None:
    """A queue handler whose name sorts before its targets' is retried, and works."""
    first, second = CaptureSink("first"), CaptureSink("second")
    cfg = config(("z_first", first), ("z_second", second), queue_name="a_queue")
    cfg["handlers"]["a_queue"]["level"] = "WARNING"
    logging.config.dictConfig(cfg)
    handler = queue_handler("a_queue")
    assert [first, second] == list(listener_of(handler).handlers)
    assert logging.WARNING == handler.level  # keys restored for the retry are applied
    logging.getLogger("app").warning("to both")
    assert listener_of(handler).flush(5)
    assert ["to both"] == first.messages == second.messages


def test_parenthesis_form_works_everywhere() -> None:
    """{"()": "aiolog.QueueHandler", ...} builds and starts the same pipeline."""
    sink = CaptureSink()
    cfg = config(("sink", sink), maxsize=50)
    spec = cfg["handlers"]["queue"]
    spec["()"] = spec.pop("class")
    logging.config.dictConfig(cfg)
    handler = queue_handler()
    assert 50 == handler.queue.maxsize
    logging.getLogger("app").info("via ()")
    assert listener_of(handler).flush(5)
    assert ["via ()"] == sink.messages


def test_level_formatter_and_respect_handler_level_apply() -> None:
    """level and formatter go to the queue handler, respect_handler_level to its listener.

    As with the stdlib's QueueHandler, the handler's formatter makes the queued message.
    """
    quiet = CaptureSink("quiet", level=logging.ERROR)
    cfg = config(("quiet", quiet), respect_handler_level=True, formatter="plain")
    cfg["formatters"] = {"plain": {"format": "%(levelname)s: %(message)s"}}
    logging.config.dictConfig(cfg)
    handler = queue_handler()
    assert "%(levelname)s: %(message)s" == handler.formatter._fmt
    assert listener_of(handler).respect_handler_level
    logging.getLogger("app").info("below the sink's level")
    logging.getLogger("app").error("at it")
    assert listener_of(handler).flush(5)
    assert ["ERROR: at it"] == quiet.messages


@pytest.mark.parametrize(
    ("keys", "culprit"),
    [
        ({"handlers": ["sink", "missing"]}, "'missing'"),
        ({"maxsize": 0}, "maxsize"),
        ({"overflow": "sometimes"}, "'sometimes'"),
        ({"maxsze": 10}, "'maxsze'"),
        ({"queue": {"()": "aiolog.RecordQueue"}, "maxsize": 10}, "maxsize"),
        ({"listener": "logging.StreamHandler"}, "listener"),
        ({"listener": {"()": "aiolog.dictconfig.listener", "max_bach": 1}}, "'max_bach'"),
        ({"queue": "aiolog.no_such_queue"}, "aiolog.no_such_queue"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_settings_fail_dictconfig_naming_the_culprit(
    keys: dict[str, Any], culprit: str
) -> None:
    """Unknown handler names and bad options fail the call; the error chain names them."""
    with pytest.raises(ValueError, match="Unable to configure handler 'queue'") as info:
        logging.config.dictConfig(config(("sink", CaptureSink()), **keys))
    assert culprit in causes(info.value)


def test_handler_attribute_listener_is_started_when_set() -> None:
    """Setting QueueHandler.listener to an aiolog listener starts it (cpython #117827)."""
    sink = CaptureSink()
    handler = QueueHandler()
    listener = QueueListener(handler.queue, sink)
    handler.listener = listener
    try:
        assert listener.running
    finally:
        handler.close()
    assert not listener.running


def test_unbounded_queue_shared_with_listener_becomes_a_record_queue() -> None:
    """An empty unbounded queue.Queue given to both sides is replaced by a RecordQueue."""
    import queue

    q: queue.Queue[Any] = queue.Queue()
    handler = QueueHandler(q, maxsize=123)
    handler.listener = QueueListener(q, CaptureSink())
    try:
        assert isinstance(handler.queue, RecordQueue)
        assert 123 == handler.queue.maxsize
        assert handler.queue is listener_of(handler).queue
    finally:
        handler.close()


def test_records_logged_to_a_replaced_handler_reach_its_successor() -> None:
    """After dictConfig replaced a handler, a record still sent to the old one is kept."""
    first, second = CaptureSink("first"), CaptureSink("second")
    logging.config.dictConfig(config(("sink", first)))
    old = queue_handler()
    logging.config.dictConfig(config(("sink", second)))
    new = queue_handler()
    assert new is not old
    logger = logging.getLogger("app")
    old.handle(logger.makeRecord("app", logging.INFO, __file__, 1, "late", None, None))
    assert listener_of(new).flush(5)
    assert ["late"] == second.messages
    assert [] == first.messages


@pytest.mark.parametrize("attempt", range(3))
def test_rerunning_dictconfig_under_load_loses_nothing(attempt: int) -> None:
    """A thread logging while dictConfig runs again: each record is written exactly once."""
    first, second = CaptureSink("first"), CaptureSink("second")
    keys = {"maxsize": 200_000, "overflow": "block"}
    logging.config.dictConfig(config(("sink", first), **keys))
    halfway = threading.Event()
    total = 20_000

    def producer() -> None:
        log = logging.getLogger("load")
        for i in range(total):
            log.info("%d", i)
            if i == total // 4:
                halfway.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert halfway.wait(30)
    logging.config.dictConfig(config(("sink", second), **keys))
    thread.join(30)
    handler = queue_handler()
    assert listener_of(handler).flush(10)
    got = sorted(int(m) for m in first.messages + second.messages)
    assert list(range(total)) == got
    # The old listener may have written some (or, its queue handed over first, none).
    assert second.messages
    assert 0 == handler.dropped


EXIT_SCRIPT = """
import asyncio, logging, logging.config, sys

events = []


class Recorder(logging.Handler):
    closed = False

    def emit(self, record):
        events.append("late" if self.closed else "emit")

    def close(self):
        self.closed = True
        events.append("close")
        with open(sys.argv[2], "w") as f:
            f.write(" ".join(events))
        super().close()


logging.config.dictConfig({{
    "version": 1,
    "handlers": {{
        "file": {{"()": "aiolog.sink", "url": "file:" + sys.argv[1], "formatter": "json"}},
        "recorder": {{"()": Recorder}},
        "queue": {{"class": "aiolog.QueueHandler", "handlers": ["file", "recorder"],
                   "listener": "aiolog.QueueListener", "maxsize": {total}}},
    }},
    "formatters": {{"json": {{"()": "aiolog.JSONFormatter"}}}},
    "root": {{"level": "INFO", "handlers": ["queue"]}},
}})


async def main():
    for i in range({total}):
        logging.getLogger("app").info("record %d", i)


asyncio.run(main())
"""


def test_exit_drains_the_listener_before_targets_close(tmp_path: Path) -> None:
    """At exit every record reaches the targets, and only then are they closed."""
    total = 5000
    out, events = tmp_path / "app.jsonl", tmp_path / "events.txt"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT.format(total=total)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(events)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == proc.returncode, proc.stderr
    assert "" == proc.stderr
    messages = [json.loads(line)["message"] for line in out.read_text().splitlines()]
    assert [f"record {i}" for i in range(total)] == messages
    assert ["emit"] * total + ["close"] == events.read_text().split()


SIGTERM_SCRIPT = """
import asyncio, logging, logging.config, os, signal, sys

logging.config.dictConfig({{
    "version": 1,
    "handlers": {{
        "file": {{"()": "aiolog.sink", "url": "file:" + sys.argv[1], "formatter": "json"}},
        "queue": {{"class": "aiolog.QueueHandler", "handlers": ["file"]}},
    }},
    "formatters": {{"json": {{"()": "aiolog.JSONFormatter"}}}},
    "root": {{"level": "INFO", "handlers": ["queue"]}},
}})


async def main():
    for i in range({total}):
        logging.getLogger("app").info("record %d", i)
    signal.raise_signal(signal.SIGTERM)  # the default disposition: the process dies here


asyncio.run(main())
"""


def test_sigterm_with_default_disposition_drains_first(tmp_path: Path) -> None:
    """A SIGTERM that kills the process (as uvicorn re-raises it) still loses nothing."""
    total = 5000
    out = tmp_path / "app.jsonl"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SIGTERM_SCRIPT.format(total=total)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, timeout=60
    )
    assert -signal.SIGTERM == proc.returncode, proc.stderr
    messages = [json.loads(line)["message"] for line in out.read_text().splitlines()]
    assert [f"record {i}" for i in range(total)] == messages


def test_sigterm_drain_leaves_an_existing_handler_alone() -> None:
    """drain_on_sigterm() only replaces the default disposition."""
    from aiolog.dictconfig import drain_on_sigterm

    def mine(signum: int, frame: Any) -> None:  # pragma: no cover - never delivered
        pass

    signal.signal(signal.SIGTERM, mine)
    assert not drain_on_sigterm()
    assert mine is signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert drain_on_sigterm()
    assert signal.SIG_DFL is not signal.getsignal(signal.SIGTERM)


def test_example_yaml_config_works_on_this_python(tmp_path: Path) -> None:
    """examples/logging.yaml, with its file path moved to tmp, routes uvicorn's loggers."""
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "app.jsonl"
    text = (ROOT / "examples" / "logging.yaml").read_text()
    assert "file:logs/app.jsonl" in text
    cfg = yaml.safe_load(text.replace("file:logs/app.jsonl", f"file:{out}"))
    cfg["handlers"]["stderr"] = {"()": CaptureSink}  # keep the test's stderr clean
    logging.config.dictConfig(cfg)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200
    )
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("app").info("from the app")
    handler = queue_handler()
    assert listener_of(handler).flush(5)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["uvicorn.access", "uvicorn.error", "app"] == [line["logger"] for line in lines]
    assert '127.0.0.1:5000 - "GET / HTTP/1.1" 200' == lines[0]["message"]
