"""aiolog.testing: capture() and the aiolog_records fixture, as a user's test suite uses them."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import aiolog
from aiolog.testing import CaptureSink, capture


def test_capture_sees_records_at_once_behind_a_running_pipeline() -> None:
    """Inside capture(), a record is there as soon as it is logged: no flush needed."""
    sink = CaptureSink()
    sink.hold()  # the pipeline writes nothing while held: capture() does not wait for it
    pipeline = aiolog.configure([sink])
    with capture() as logs:
        logging.getLogger("app").info("hello %s", "ann")
        assert ["hello ann"] == logs.messages
        assert "app" == logs.records[0].name
    sink.release()
    assert pipeline.flush()
    assert ["hello ann"] == sink.messages  # the sinks got it as usual


def test_capture_entered_before_configure_stays_on_the_root_logger() -> None:
    """configure() inside a capture() block does not move its handler behind the queue."""
    with capture() as logs:
        sink = CaptureSink()
        sink.hold()
        pipeline = aiolog.configure([sink])
        aiolog.configure([sink])  # a reconfigure keeps it too
        logging.getLogger("app").warning("hello")
        assert ["hello"] == logs.messages
        assert logs in logging.getLogger().handlers
        sink.release()
        assert aiolog.get_pipeline() is not pipeline
        assert aiolog.shutdown()
        assert logs in logging.getLogger().handlers
    assert ["hello"] == sink.messages
    assert logs not in logging.getLogger().handlers


def test_capture_in_a_task_keeps_the_logger_s_record() -> None:
    """Records logged in a task are captured on the loop thread, in order."""

    async def main() -> None:
        log = logging.getLogger("app")
        for i in range(3):
            log.warning("step %d", i)

    aiolog.configure([CaptureSink()])
    with capture() as logs:
        asyncio.run(main())
    assert ["step 0", "step 1", "step 2"] == logs.messages


def test_capture_level_lowers_the_logger_level_for_the_block_only() -> None:
    """capture("DEBUG") sees debug records after configure(level="INFO"), then puts INFO back."""
    aiolog.configure([CaptureSink()], level="INFO")
    root = logging.getLogger()
    with capture("DEBUG") as logs:
        logging.getLogger("app").debug("detail")
    assert ["detail"] == logs.messages
    assert logging.INFO == root.level
    assert [] == [h for h in root.handlers if isinstance(h, type(logs))]


def test_capture_leaves_out_records_below_its_level() -> None:
    """capture("WARNING") keeps warnings and above; the logger's level is left as it was."""
    aiolog.configure([CaptureSink()], level="DEBUG")
    with capture("WARNING", logger="app") as logs:
        logging.getLogger("app").info("routine")
        logging.getLogger("app").error("broken")
        logging.getLogger("other").error("elsewhere")
    assert ["broken"] == logs.messages
    assert logging.NOTSET == logging.getLogger("app").level


USER_TESTS = """
import logging

import aiolog


def test_caplog_is_empty_until_a_flush(caplog):
    aiolog.configure(["stdout"])
    logging.getLogger("app").warning("hello")
    seen_before = [r.getMessage() for r in caplog.records]
    assert aiolog.get_pipeline().flush()
    seen_after = [r.getMessage() for r in caplog.records]
    print("CAPLOG", seen_before, seen_after)
    aiolog.shutdown()


def test_the_fixture_needs_no_flush(aiolog_records):
    aiolog.configure(["stdout"])
    logging.getLogger("app").warning("hello")
    assert ["hello"] == aiolog_records.messages
    aiolog.shutdown()
"""


def test_in_a_user_suite_caplog_needs_a_flush_and_the_fixture_does_not(tmp_path: Path) -> None:
    """A real pytest run: caplog gets the record only after flush(); aiolog_records at once."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    assert "CAPLOG [] ['hello']" in proc.stdout
    assert "2 passed" in proc.stdout
