"""StreamSink: stderr/stdout, automatic format, colours on a TTY, isolation from a stuck pipe."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aiolog.sinks.stream import StreamSink


def record(msg: str = "hello", level: int = logging.INFO) -> logging.LogRecord:
    rec = logging.LogRecord("app", level, __file__, 1, msg, None, None)
    rec.message = rec.getMessage()
    return rec


def write(sink: StreamSink, *records: logging.LogRecord) -> None:
    sink.open()

    async def main() -> None:
        await sink.write(list(records))
        await sink.aclose()

    asyncio.run(main())


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """stderr that is not a TTY gets one JSON object per line."""
    sink = StreamSink("stderr")
    write(sink, record("one"), record("two"))
    lines = capsys.readouterr().err.splitlines()
    assert ["one", "two"] == [json.loads(line)["message"] for line in lines]


def test_stdout_sink(capsys: pytest.CaptureFixture[str]) -> None:
    """The stdout sink writes to stdout, looked up at write time."""
    write(StreamSink("stdout"), record("out"))
    assert "out" == json.loads(capsys.readouterr().out)["message"]


def test_text_with_colours_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TTY gets readable text with ANSI colours."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = FakeTTY()
    write(StreamSink(tty), record("readable", logging.WARNING))
    out = tty.getvalue()
    assert "readable" in out
    assert "\x1b[" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_no_color_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR turns colours off even on a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    tty = FakeTTY()
    write(StreamSink(tty), record("plain"))
    assert "\x1b[" not in tty.getvalue()


def test_explicit_formatter_wins(capsys: pytest.CaptureFixture[str]) -> None:
    """A formatter set by setFormatter (dictConfig does this) is used."""
    sink = StreamSink("stderr")
    sink.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    write(sink, record("custom"))
    assert "INFO|custom\n" == capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "culprit"),
    [
        ("stderr?format=xml", "xml"),
        ("stdout?colour=yes", "colour"),
        ("stderr?colors=maybe", "maybe"),
    ],
)
def test_bad_url_options(url: str, culprit: str) -> None:
    """Bad options raise ValueError naming them."""
    with pytest.raises(ValueError, match=culprit):
        StreamSink.from_url(url)


def test_stdio_stays_blocking() -> None:
    """Writing never switches the process's stderr to non-blocking mode."""
    fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    before = os.get_blocking(fd)
    write(StreamSink(sys.__stderr__), record("x"))  # type: ignore[arg-type]
    assert before == os.get_blocking(fd)


STUCK_PIPE = """
import logging, sys
import aiolog
from aiolog.testing import CaptureSink

capture = CaptureSink("mem")
pipeline = aiolog.configure(["stderr", capture])
log = logging.getLogger("app")
for i in range(3000):
    log.info("record %d %s", i, "x" * 200)
ok = capture.wait_for(3000, 20)
stats = pipeline.stats()["sinks"]
print(ok, stats["mem"]["written"], stats["stderr"]["written"] < 3000, flush=True)
import os
os._exit(0)
"""


def test_a_stuck_stderr_pipe_does_not_stall_other_sinks(tmp_path: Path) -> None:
    """With nobody reading stderr, the other sink still gets every record."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK_PIPE))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # never read while the child runs: the pipe fills up
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.communicate()
    assert "True 3000 True" == line.strip()
