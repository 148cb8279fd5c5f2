"""FileSink: whole lines, rotation, retention, compression, reopening, several processes."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime
import errno
import gzip
import json
import logging
import multiprocessing
import os
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiolog.sinks import file as file_module
from aiolog.sinks.file import FileSink

pytestmark = pytest.mark.timeout(20)

ROTATED = re.compile(r"app\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{6}\.jsonl(\.gz)?")


def record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
    """A real record, as a logger makes it."""
    return logging.getLogger("t").makeRecord("t", level, __file__, 1, msg, (), None)


def plain(sink: FileSink) -> FileSink:
    """Give *sink* a ``%(message)s`` formatter (the lines are then the messages)."""
    sink.setFormatter(logging.Formatter("%(message)s"))
    return sink


def write(sink: FileSink, *batches: list[str], close: bool = True) -> None:
    """Write each batch of messages with one ``write`` call, then ``aclose`` the sink."""

    async def main() -> None:
        for batch in batches:
            await sink.write([record(m) for m in batch])
        if close:
            await sink.aclose()

    asyncio.run(main(), debug=True)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    """A timestamp from local wall-clock fields."""
    return datetime.datetime(year, month, day, hour, minute, sec).timestamp()


class Clock:
    """A settable clock for the sink's ``_now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_sink() -> Iterator[Callable[..., FileSink]]:
    """Build opened sinks with a plain formatter and stop their threads after the test."""
    sinks: list[FileSink] = []

    def make(
        path: str | os.PathLike[str], cls: type[FileSink] = FileSink, **options: Any
    ) -> FileSink:
        sink = plain(cls(path, **options))
        sink.open()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.wait_compressed(5)
        sink.executor.shutdown(wait=True)


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


def rotated(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ROTATED.fullmatch(p.name))


# -- writing ----------------------------------------------------------------------------------


def test_lines_written_whole_and_in_order(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """Every record becomes one line, in order, across batches and reopenings."""
    path = tmp_path / "app.jsonl"
    sink = make_sink(path)
    write(sink, ["one", "two"], ["three"])
    write(sink, ["four"])
    assert ["one", "two", "three", "four"] == lines(path)


def test_directories_created(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """Missing parent directories are created when the file is first opened, not before.

    Building the sink changes nothing on disk: a configuration refused for another
    setting leaves no directory behind.
    """
    path = tmp_path / "a" / "b" / "c" / "app.jsonl"
    sink = make_sink(path)
    assert not (tmp_path / "a").exists()
    write(sink, ["x"])
    assert ["x"] == lines(path)


def test_new_file_mode(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """A new file is created 0o640 by default, or with the given mode, under umask 022."""
    old = os.umask(0o022)
    try:
        write(make_sink(tmp_path / "default.log"), ["x"])
        write(make_sink(tmp_path / "private.log", mode=0o600), ["x"])
    finally:
        os.umask(old)
    assert 0o640 == (tmp_path / "default.log").stat().st_mode & 0o777
    assert 0o600 == (tmp_path / "private.log").stat().st_mode & 0o777


def test_relative_path_resolved_at_configure_time(
    tmp_path: Path, make_sink: Callable[..., FileSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path is resolved against the cwd when the sink is built, not later."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    sink = make_sink("logs/app.jsonl")
    monkeypatch.chdir(tmp_path / "elsewhere")
    write(sink, ["x"])
    assert str(tmp_path / "logs" / "app.jsonl") == sink.path
    assert ["x"] == lines(tmp_path / "logs" / "app.jsonl")
    assert not (tmp_path / "elsewhere" / "logs").exists()


def test_lone_surrogate_written_escaped(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """A lone surrogate cannot fail the batch: it is written as a backslash escape."""
    path = tmp_path / "app.log"
    write(make_sink(path), ["before", "bad \udc80 char", "after"])
    assert b"before\nbad \\udc80 char\nafter\n" == path.read_bytes()


def test_multi_megabyte_message_written_whole(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A 5 MB message (larger than one write chunk) arrives whole, between its neighbours."""
    path = tmp_path / "app.log"
    big = "".join(chr(ord("a") + i % 26) for i in range(5_000_000))
    write(make_sink(path), ["small", big, "tail"] + [f"n{i}" * 1000 for i in range(600)])
    got = lines(path)
    assert ["small", big, "tail"] == got[:3]
    assert [f"n{i}" * 1000 for i in range(600)] == got[3:]


def test_format_error_loses_only_that_record_silently(
    tmp_path: Path, make_sink: Callable[..., FileSink], capsys: pytest.CaptureFixture[str]
) -> None:
    """A record the formatter fails on is lost and noted, silently; the others are written."""
    path = tmp_path / "app.log"
    sink = make_sink(path)
    sink.setFormatter(logging.Formatter("%(message)s %(missing)s"))
    good = record("good")
    good.missing = "field"
    results: list[int | None] = []

    async def main() -> None:
        results.append(await sink.write([record("bad"), good, record("also bad")]))
        results.append(await sink.write([good]))
        await sink.aclose()

    asyncio.run(main())
    assert ["good field", "good field"] == lines(path)
    assert [2, None] == results
    assert {
        "errors": 2,
        "last_error": "ValueError: Formatting field not found in record: 'missing'",
    } == sink.sink_stats()
    assert ("", "") == tuple(capsys.readouterr())


def test_format_error_in_the_pipeline_stats(tmp_path: Path) -> None:
    """Through the listener a formatter failure counts as dropped (error), with last_error."""
    import aiolog

    class Picky(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            if record.getMessage() == "bad":
                raise ValueError("cannot format this one")
            return record.getMessage()

    path = tmp_path / "app.log"
    sink = FileSink(path)
    sink.setFormatter(Picky())
    pipeline = aiolog.configure([sink])
    try:
        log = logging.getLogger("picky")
        for message in ("one", "bad", "two"):
            log.info(message)
    finally:
        pipeline.stop()
    [stats] = pipeline.stats()["sinks"].values()
    got = lines(path)
    notices = [line for line in got if line.startswith("aiolog lost 1 record")]
    assert ["one", "two"] == [line for line in got if line not in notices]
    assert len(notices) == stats["notices"]
    assert (3, 2, 1, 1) == (
        stats["offered"],
        stats["written"],
        stats["dropped_error"],
        stats["errors"],
    )
    assert "ValueError: cannot format this one" == stats["last_error"]


# -- configuration ----------------------------------------------------------------------------


def test_from_url_absolute_forms(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """``file:///abs`` and ``file:/abs`` name the same absolute, percent-decoded path."""
    path = tmp_path / "my app#1.log"
    quoted = urllib.parse.quote(str(path))
    for url in (f"file://{quoted}", f"file:{quoted}", f"file://localhost{quoted}"):
        sink = plain(FileSink.from_url(url))
        assert str(path) == sink.path
        assert url == sink.url
    write(plain(FileSink.from_url(f"file://{quoted}")), ["x"])
    assert ["x"] == lines(path)


def test_from_url_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``file:logs/app.jsonl`` is relative to the current directory."""
    monkeypatch.chdir(tmp_path)
    sink = FileSink.from_url("file:logs/app.jsonl")
    assert str(tmp_path / "logs" / "app.jsonl") == sink.path
    assert "file:logs/app.jsonl" == sink.url


def test_from_url_options(tmp_path: Path) -> None:
    """Query options are parsed; keyword options override them."""
    url = (
        f"file://{tmp_path}/app.jsonl?rotate=10MB&when=midnight&keep=7&compress=gzip"
        "&level=INFO&mode=600&encoding=latin-1"
    )
    sink = FileSink.from_url(url)
    assert (10 * 1024 * 1024, "MIDNIGHT", 7, "gzip") == (
        sink.max_bytes,
        sink.when,
        sink.keep,
        sink.compress,
    )
    assert (logging.INFO, 0o600, "latin-1") == (sink.level, sink.mode, sink.encoding)
    sink = FileSink.from_url(url, keep=2, rotate=1000, level=logging.ERROR)
    assert (1000, 2, logging.ERROR) == (sink.max_bytes, sink.keep, sink.level)
    assert f"file:{tmp_path}/plain.log" == FileSink(tmp_path / "plain.log").url


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1234, 1234),
        ("1234", 1234),
        ("500KB", 500 * 1024),
        ("500kb", 500 * 1024),
        ("10MB", 10 * 1024**2),
        ("10 MiB", 10 * 1024**2),
        ("1.5MB", int(1.5 * 1024**2)),
        ("1GB", 1024**3),
        ("2gib", 2 * 1024**3),
        ("64k", 64 * 1024),
        ("100B", 100),
    ],
)
def test_rotate_sizes(tmp_path: Path, value: int | str, expected: int) -> None:
    """``rotate`` takes bytes or a size with binary units, in any case."""
    assert expected == FileSink(tmp_path / "app.log", rotate=value).max_bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [("midnight", "MIDNIGHT"), ("h", "H"), ("hourly", "H"), ("daily", "D"), ("W6", "W6")],
)
def test_when_values(tmp_path: Path, value: str, expected: str) -> None:
    """``when`` takes TimedRotatingFileHandler's values, any case, and two aliases."""
    assert expected == FileSink(tmp_path / "app.log", when=value).when


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rotate", "10XB"),
        ("rotate", "MB"),
        ("rotate", 0),
        ("rotate", -5),
        ("rotate", "0.0001KB"),
        ("rotate", True),
        ("when", "weekly"),
        ("when", "W7"),
        ("when", ""),
        ("keep", -1),
        ("keep", "two"),
        ("keep", 1.5),
        ("compress", "zip"),
        ("mode", "9"),
        ("mode", 0o10000),
        ("mode", 640),  # decimal by mistake: 0o1200
        ("encoding", "no-such-codec"),
        ("encoding", "base64"),
        ("encoding", "utf-16"),
        ("level", "LOUD"),
        ("format", "xml"),
    ],
)
def test_bad_option(tmp_path: Path, option: str, value: Any) -> None:
    """Every bad option raises ValueError at construction, naming option and value."""
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError) as info:
        FileSink(tmp_path / "app.log", **options)
    assert f"{option}={value!r}" in str(info.value)
    assert not (tmp_path / "app.log").exists()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("rotat=10MB", "'rotat'"),
        ("rotate=lots", "rotate='lots'"),
        ("keep=", "keep=''"),
        ("when=yearly", "when='yearly'"),
        ("keep=1&keep=2", "keep='2'"),
    ],
)
def test_bad_url_query(tmp_path: Path, query: str, named: str) -> None:
    """An unknown, repeated or bad query option raises ValueError naming it."""
    with pytest.raises(ValueError, match=re.escape(named)):
        FileSink.from_url(f"file://{tmp_path}/app.log?{query}")


@pytest.mark.parametrize(
    "url", ["file://logs/app.log", "http://example.com/app.log", "file:", "file:/x/a#b"]
)
def test_bad_url(url: str) -> None:
    """A host in a file URL, another scheme, no path or a fragment raise ValueError."""
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        FileSink.from_url(url)


def test_unwritable_paths(tmp_path: Path) -> None:
    """A path that cannot be written raises ValueError naming it, even for root."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    for path in (
        str(tmp_path / "afile" / "app.log"),  # parent is a file
        str(tmp_path / "afile" / "sub" / "app.log"),
        str(tmp_path / "adir"),  # a directory
        "/proc/aiolog-test/app.log",  # cannot create a directory in /proc
    ):
        with pytest.raises(ValueError, match=re.escape(f"path={path!r}")):
            FileSink(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_directory(tmp_path: Path) -> None:
    """A path in a directory without write permission raises ValueError naming it."""
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(ValueError, match="path="):
        FileSink(tmp_path / "ro" / "app.log")


def test_rotating_a_non_regular_file_is_refused() -> None:
    """Rotation of something that is not a regular file (/dev/null) is refused."""
    with pytest.raises(ValueError, match="regular file"):
        FileSink("/dev/null", rotate="1MB")


# -- formatters -------------------------------------------------------------------------------


def test_default_format_is_json(tmp_path: Path) -> None:
    """Without a formatter set, lines are JSON from aiolog.formatting."""
    path = tmp_path / "app.jsonl"
    sink = FileSink(path)
    sink.open()
    write(sink, ["hello"])
    sink.executor.shutdown()
    assert "hello" in json.loads(path.read_text())["message"]


def test_format_option_and_set_formatter(tmp_path: Path) -> None:
    """``format=`` picks a formatter from formatter_for; setFormatter (dictConfig) wins."""
    from aiolog.formatting import formatter_for

    sink = FileSink(tmp_path / "app.log", format="logfmt")
    assert type(formatter_for("logfmt")) is type(sink.formatter)
    explicit = logging.Formatter("%(levelname)s %(message)s")
    sink.setFormatter(explicit)
    assert explicit is sink.formatter


JSON_MESSAGES = ["plain", "ünïcödé ✓ 日本", "bad \udc80 surrogate", 'q"uote\nnewline']


def test_json_lines_are_what_the_formatter_formats(tmp_path: Path) -> None:
    """The JSON formatter's bytes path (orjson when present) writes exactly ``format()``
    plus a newline, lone surrogates (which orjson refuses) included, across chunks."""
    path = tmp_path / "app.jsonl"
    sink = FileSink(path)
    sink.open()
    records = [record(m) for m in JSON_MESSAGES] + [record(f"n{i}" * 500) for i in range(300)]
    expected = "".join(f"{sink.format(r)}\n" for r in records).encode("utf-8")

    async def main() -> None:
        await sink.write(records)
        await sink.aclose()

    asyncio.run(main())
    sink.executor.shutdown()
    assert expected == path.read_bytes()
    assert JSON_MESSAGES[1] == json.loads(path.read_bytes().splitlines()[1])["message"]


def test_a_json_formatter_subclass_with_its_own_format_is_honoured(tmp_path: Path) -> None:
    """A JSONFormatter subclass that overrides format() is written through it."""
    from aiolog.formatting import JSONFormatter

    class Prefixed(JSONFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return "@" + super().format(record)

    path = tmp_path / "app.jsonl"
    sink = FileSink(path)
    sink.setFormatter(Prefixed())
    sink.open()
    write(sink, ["x"])
    sink.executor.shutdown()
    assert path.read_text().startswith("@{")


def test_json_in_a_non_utf8_file(tmp_path: Path) -> None:
    """JSON in a latin-1 file: what latin-1 cannot hold is backslash-escaped, as for text."""
    path = tmp_path / "app.jsonl"
    sink = FileSink(path, encoding="latin-1")
    sink.open()
    write(sink, ["café ✓"])
    sink.executor.shutdown()
    assert b'"message":"caf\xe9 \\u2713"' in path.read_bytes()
    assert "café ✓" == json.loads(path.read_text("latin-1"))["message"]


# -- external rotation, fork, close -----------------------------------------------------------


@pytest.mark.parametrize("removed", [False, True], ids=["renamed", "removed"])
def test_reopens_after_external_rotation(
    tmp_path: Path, make_sink: Callable[..., FileSink], removed: bool
) -> None:
    """A file moved or removed by logrotate is recreated at the path before the next batch."""
    path = tmp_path / "app.log"
    moved = tmp_path / "app.log.1"
    sink = make_sink(path)

    async def main() -> None:
        await sink.write([record("old")])
        os.rename(path, moved)
        if removed:
            os.remove(moved)
        await sink.write([record("new")])
        await sink.aclose()

    asyncio.run(main())
    assert ["new"] == lines(path)
    assert removed or ["old"] == lines(moved)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_after_fork_closes_the_childs_copy_only(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """In a forked child, after_fork closes the child's copy of the descriptor (no leak per
    child) and the child's next write reopens; the parent's descriptor stays open."""
    path = tmp_path / "app.log"
    sink = make_sink(path)
    write(sink, ["parent"], close=False)
    fd = sink._fd
    assert fd is not None
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            sink.after_fork()
            try:
                os.fstat(fd)
                code = 2  # still open in the child: leaked
            except OSError:
                sink.open()
                write(sink, ["child"])
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    os.fstat(fd)  # the parent's own descriptor is untouched
    write(sink, ["parent again"])
    assert ["parent", "child", "parent again"] == lines(path)


def test_close_closes_the_file(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """The synchronous close() (logging.shutdown) closes a file left open."""
    sink = make_sink(tmp_path / "app.log")
    write(sink, ["x"], close=False)
    fd = sink._fd
    assert fd is not None
    sink.close()
    assert sink._fd is None
    with pytest.raises(OSError):
        os.fstat(fd)


# -- rotation ---------------------------------------------------------------------------------


def read_all(directory: Path) -> list[str]:
    """Lines of the rotated files, oldest first, then of the current file."""
    out: list[str] = []
    for name in rotated(directory):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(directory / name, "rt", encoding="utf-8") as f:
            out += f.read().splitlines()
    return out + lines(directory / "app.jsonl")


def numbered(count: int, width: int = 99) -> list[str]:
    """Messages of exactly *width* characters (lines of width + 1 bytes)."""
    return [f"{i:05d}".ljust(width, ".") for i in range(count)]


def test_size_rotation_keeps_every_record(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """Size rotation happens between batches: no record lost or duplicated, none too big."""
    sink = make_sink(tmp_path / "app.jsonl", rotate=1000)
    sink._now = clock = Clock(local(2026, 11, 24, 12, 0, 0))
    messages = numbered(60)

    async def main() -> None:
        for i in range(0, 60, 3):  # batches of 300 bytes: 3 per file
            await sink.write([record(m) for m in messages[i : i + 3]])
            clock.now += 1
        await sink.aclose()

    asyncio.run(main())
    assert messages == read_all(tmp_path)
    names = rotated(tmp_path)
    assert 6 == len(names)  # 9 records (900 bytes) per file, 6 left in the current one
    assert "app.2026-11-24T12-00-03.000000.jsonl" == names[0]
    assert all(900 == (tmp_path / n).stat().st_size for n in names)


def test_size_rotation_keep(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """With keep=2 exactly two rotated files remain, holding the newest records."""
    sink = make_sink(tmp_path / "app.jsonl", rotate=1000, keep=2)
    sink._now = clock = Clock(local(2026, 11, 24, 12, 0, 0))
    messages = numbered(60)

    async def main() -> None:
        for i in range(0, 60, 3):
            await sink.write([record(m) for m in messages[i : i + 3]])
            clock.now += 1
        await sink.aclose()

    asyncio.run(main())
    assert 2 == len(rotated(tmp_path))
    assert messages[-24:] == read_all(tmp_path)  # 2 files of 9 records + 6 in the current one


def test_batch_larger_than_limit_written_whole(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A batch over the limit goes whole into a file; an empty file is never rotated."""
    path = tmp_path / "app.jsonl"
    sink = make_sink(path, rotate=100)
    write(sink, numbered(5), ["next"])
    assert [numbered(5)] == [lines(tmp_path / n) for n in rotated(tmp_path)]
    assert ["next"] == lines(path)


def test_name_collisions_and_retention_spare_other_files(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """Rotations at one clock reading get stamps 1 µs apart; retention spares other names."""
    others = [
        "app.jsonl.bak",
        "app.2026-11-24.jsonl",
        "app.2026-11-24T00-00-00.log",
        "other.2026-11-24T00-00-00.jsonl",
        "app.2026-11-24T00-00-00.jsonl.gz.tmp",
        "app.2026-11-24T00-00-00.000000.jsonl.gz.tmp",
        "app.2026-11-24T00-00-00.x.jsonl",
        "app.2026-11-24T00-00-00.jsonl",
        "app.2026-11-24T00-00-00.12345.jsonl",
    ]
    for name in others:
        (tmp_path / name).write_text("keep me")
    sink = make_sink(tmp_path / "app.jsonl", rotate=10, keep=2)
    sink._now = Clock(local(2026, 11, 24, 12, 0, 0))
    write(sink, ["a" * 10], ["b" * 10], ["c" * 10], ["d" * 10])
    assert [
        "app.2026-11-24T12-00-00.000001.jsonl",
        "app.2026-11-24T12-00-00.000002.jsonl",
    ] == rotated(tmp_path)
    assert ["b" * 10] == lines(tmp_path / "app.2026-11-24T12-00-00.000001.jsonl")
    assert ["d" * 10] == lines(tmp_path / "app.jsonl")
    for name in others:
        assert "keep me" == (tmp_path / name).read_text()


def test_rotated_names_sort_in_rotation_order_whatever_the_clock(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """Names sort as text in rotation order, at one clock reading or with the clock set back."""
    sink = make_sink(tmp_path / "app.jsonl", rotate=1)
    start = local(2026, 11, 24, 12, 0, 0)
    readings = [start, start, start - 3600, start + 0.25, start + 0.25, start + 1]
    sink._now = clock = Clock(readings[0])

    async def main() -> None:
        await sink.write([record("0")])
        for i, now in enumerate(readings, 1):
            clock.now = now
            await sink.write([record(str(i))])  # rotates the file holding record i - 1
        await sink.aclose()

    asyncio.run(main())
    assert [
        "app.2026-11-24T12-00-00.000000.jsonl",
        "app.2026-11-24T12-00-00.000001.jsonl",
        "app.2026-11-24T12-00-00.000002.jsonl",  # the clock went back an hour
        "app.2026-11-24T12-00-00.250000.jsonl",
        "app.2026-11-24T12-00-00.250001.jsonl",
        "app.2026-11-24T12-00-01.000000.jsonl",
    ] == rotated(tmp_path)
    assert [str(i) for i in range(len(readings) + 1)] == read_all(tmp_path)


def test_a_taken_name_moves_the_stamp_on(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A name taken (plain, .gz or .gz.tmp) moves the stamp on by 1 µs; its file stays."""
    taken = [
        "app.2026-11-24T12-00-00.000000.jsonl",
        "app.2026-11-24T12-00-00.000001.jsonl.gz",
        "app.2026-11-24T12-00-00.000002.jsonl.gz.tmp",
    ]
    for name in taken:
        (tmp_path / name).write_text("earlier run\n")
    sink = make_sink(tmp_path / "app.jsonl", rotate=1)
    sink._now = Clock(local(2026, 11, 24, 12, 0, 0))
    write(sink, ["a"], ["b"])
    assert ["a"] == lines(tmp_path / "app.2026-11-24T12-00-00.000003.jsonl")
    for name in taken:
        assert "earlier run\n" == (tmp_path / name).read_text()


def test_rotated_names_sort_in_order_across_the_end_of_summer_time(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """Names from the hour repeated when summer time ends sort after the earlier ones."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "CET-1CEST,M3.5.0,M10.5.0/3"  # POSIX rule: needs no tz database
    time.tzset()
    try:
        sink = make_sink(tmp_path / "app.jsonl", rotate=1)
        # 2026-10-25 02:30 CEST, then 02:10 CET (40 minutes later; the clocks went back).
        summer = calendar.timegm((2026, 10, 25, 0, 30, 0))
        sink._now = clock = Clock(summer)
        write(sink, ["summer"], ["winter"], close=False)
        clock.now = summer + 40 * 60
        write(sink, ["after"])
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    assert [
        "app.2026-10-25T02-30-00.000000.jsonl",
        "app.2026-10-25T02-30-00.000001.jsonl",
    ] == rotated(tmp_path)
    assert ["summer", "winter", "after"] == read_all(tmp_path)


BURST = 40_000


def test_keep_under_a_burst_through_the_pipeline(tmp_path: Path) -> None:
    """keep=3 under a 40 000-record burst keeps the newest records, in one unbroken run."""
    import aiolog

    async def burst() -> None:
        log = logging.getLogger("burst")
        for i in range(BURST):
            log.info("%d", i)

    pipeline = aiolog.configure([f"file:{tmp_path}/app.jsonl?rotate=64KB&keep=3"])
    try:
        asyncio.run(burst())
    finally:
        stopped = pipeline.stop()
    assert stopped
    [stats] = pipeline.stats()["sinks"].values()
    assert (BURST, BURST, 0) == (stats["offered"], stats["written"], stats["dropped"])
    names = rotated(tmp_path)
    assert 3 == len(names)
    got = [int(json.loads(line)["message"]) for line in read_all(tmp_path)]
    assert list(range(got[0], BURST)) == got


def test_time_rotation_at_midnight(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """when=midnight rotates with the first batch after local midnight, named for midnight."""
    path = tmp_path / "app.jsonl"
    sink = make_sink(path, when="midnight")
    sink._now = clock = Clock(local(2026, 11, 24, 23, 59, 58))

    async def main() -> None:
        await sink.write([record("day 1 a")])
        clock.now = local(2026, 11, 24, 23, 59, 59)
        await sink.write([record("day 1 b")])
        clock.now = local(2026, 11, 25, 0, 0, 3)
        await sink.write([record("day 2 a")])
        clock.now = local(2026, 11, 25, 23, 0, 0)
        await sink.write([record("day 2 b")])
        await sink.aclose()

    asyncio.run(main())
    assert ["app.2026-11-25T00-00-00.000000.jsonl"] == rotated(tmp_path)
    assert ["day 1 a", "day 1 b"] == lines(tmp_path / "app.2026-11-25T00-00-00.000000.jsonl")
    assert ["day 2 a", "day 2 b"] == lines(path)


def test_time_rotation_of_a_file_from_an_earlier_run(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A file last written before midnight is rotated by the first batch of a new run."""
    path = tmp_path / "app.jsonl"
    path.write_text("yesterday\n")
    stamp = local(2026, 11, 23, 18, 0, 0)
    os.utime(path, (stamp, stamp))
    sink = plain(FileSink(path, when="midnight"))
    sink._now = Clock(local(2026, 11, 24, 9, 0, 0))
    sink.open()
    write(sink, ["today"])
    sink.executor.shutdown()
    assert ["yesterday"] == lines(tmp_path / "app.2026-11-24T00-00-00.000000.jsonl")
    assert ["today"] == lines(path)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("S", local(2026, 11, 24, 10, 0, 1)),
        ("M", local(2026, 11, 24, 10, 1, 0)),
        ("H", local(2026, 11, 24, 11, 0, 0)),
        ("D", local(2026, 11, 25, 10, 0, 0)),
        ("MIDNIGHT", local(2026, 11, 25)),
        ("W0", local(2026, 11, 30)),  # 2026-11-24 is a Tuesday
        ("W1", local(2026, 12, 1)),  # today's weekday: next week
        ("W2", local(2026, 11, 25)),
        ("W6", local(2026, 11, 29)),
    ],
)
def test_next_rollover(when: str, expected: float) -> None:
    """Rotation times follow TimedRotatingFileHandler, in local time."""
    assert expected == file_module._next_rollover(when, local(2026, 11, 24, 10, 0, 0))


# -- compression ------------------------------------------------------------------------------


def test_gzip_compression(tmp_path: Path, make_sink: Callable[..., FileSink]) -> None:
    """Rotated files become valid gzip with the same content and mode; the plain file goes."""
    old = os.umask(0o022)
    try:
        sink = make_sink(tmp_path / "app.jsonl", rotate=10, compress="gzip", keep=5)
        sink._now = clock = Clock(local(2026, 11, 24, 12, 0, 0))

        async def main() -> None:
            for name in ("first", "second", "third"):
                await sink.write([record(name * 3)])
                clock.now += 1
            await sink.aclose()

        asyncio.run(main())
    finally:
        os.umask(old)
    assert sink.wait_compressed(5)
    names = rotated(tmp_path)
    assert [
        "app.2026-11-24T12-00-01.000000.jsonl.gz",
        "app.2026-11-24T12-00-02.000000.jsonl.gz",
    ] == names
    assert b"firstfirstfirst\n" == gzip.decompress((tmp_path / names[0]).read_bytes())
    assert 0o640 == (tmp_path / names[0]).stat().st_mode & 0o777
    assert ["thirdthirdthird"] == lines(tmp_path / "app.jsonl")
    assert not list(tmp_path.glob("*.tmp"))


def test_retention_counts_compressed_files(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """keep counts compressed and uncompressed rotated files alike."""
    (tmp_path / "app.2020-01-01T00-00-00.000000.jsonl.gz").write_bytes(gzip.compress(b"old\n"))
    (tmp_path / "app.2020-01-02T00-00-00.000000.jsonl").write_text("old\n")
    sink = make_sink(tmp_path / "app.jsonl", rotate=10, compress="gzip", keep=2)
    sink._now = Clock(local(2026, 11, 24, 12, 0, 0))
    write(sink, ["a" * 10], ["b" * 10])
    assert sink.wait_compressed(5)
    assert [
        "app.2020-01-02T00-00-00.000000.jsonl",
        "app.2026-11-24T12-00-00.000000.jsonl.gz",
    ] == rotated(tmp_path)


def test_compression_off_the_write_path_and_awaited_by_aclose(
    tmp_path: Path, make_sink: Callable[..., FileSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes go on while a compression runs; aclose waits for it to finish."""
    started = threading.Event()
    release = threading.Event()
    real = file_module._gzip_file

    def gated(path: str) -> None:
        started.set()
        release.wait(10)
        real(path)

    monkeypatch.setattr(file_module, "_gzip_file", gated)
    path = tmp_path / "app.jsonl"
    sink = make_sink(path, rotate=20, compress="gzip")

    async def main() -> None:
        await sink.write([record("a" * 10)])
        await sink.write([record("b" * 10)])  # 22 bytes > 20: rotates, compression blocks
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, started.wait, 5)
        await sink.write([record("c")])  # not held up by the compression
        assert ["b" * 10, "c"] == lines(path)
        closing = asyncio.ensure_future(sink.aclose())
        done, _ = await asyncio.wait({closing}, timeout=0.2)
        assert not done
        release.set()
        await closing

    try:
        asyncio.run(main())
    finally:
        release.set()
    [name] = rotated(tmp_path)
    assert name.endswith(".jsonl.gz")
    assert b"a" * 10 + b"\n" == gzip.decompress((tmp_path / name).read_bytes())


# -- failed writes ----------------------------------------------------------------------------


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


DISK_FULL = f"OSError: {disk_full()}"


class FailingSink(FileSink):
    """A FileSink whose next ``write`` calls do what :attr:`plan` says, on the real file.

    One entry per call: ``None`` (a normal call), a number of bytes (the call writes at
    most that many, ``0`` writing nothing), or an exception to raise; once the plan is
    used up, writes are normal. :attr:`interloper` runs just before an exception is raised.
    """

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        super().__init__(path, **options)
        self.plan: list[int | OSError | None] = []
        self.interloper: Callable[[], None] | None = None

    def _write_some(self, data: memoryview) -> int:
        step = self.plan.pop(0) if self.plan else None
        if step is None:
            return super()._write_some(data)
        if isinstance(step, OSError):
            if self.interloper is not None:
                self.interloper()
            raise step
        if not step:
            return 0
        return super()._write_some(data[:step])


def failing(make_sink: Callable[..., FileSink], path: Path) -> FailingSink:
    """An opened :class:`FailingSink` on *path*, from the ``make_sink`` fixture."""
    sink = make_sink(path, FailingSink)
    assert isinstance(sink, FailingSink)
    return sink


def run_batches(sink: FileSink, *batches: list[str]) -> list[int | None]:
    """Write each batch of messages with one ``write`` call; return what each returned."""
    results: list[int | None] = []

    async def main() -> None:
        for batch in batches:
            results.append(await sink.write([record(m) for m in batch]))
        await sink.aclose()

    asyncio.run(main(), debug=True)
    return results


def as_bytes(*messages: str) -> bytes:
    return "".join(f"{m}\n" for m in messages).encode()


def test_failed_write_counts_whole_lines_and_cuts_the_torn_one(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A write failing part-way counts whole lines written, the rest lost; the torn one is cut."""
    path = tmp_path / "app.log"
    sink = failing(make_sink, path)
    m = numbered(5)  # lines of 100 bytes
    sink.plan = [None, 250, disk_full()]  # "start"; two lines and a half, then a full disk
    assert [None, 3, None] == run_batches(sink, ["start"], m, ["after"])
    assert as_bytes("start", m[0], m[1], "after") == path.read_bytes()
    assert {"errors": 1, "last_error": DISK_FULL} == sink.sink_stats()


@pytest.mark.parametrize(
    ("plan", "written"),
    [
        ([300, 150, disk_full()], 4),  # torn in the second chunk
        ([300, disk_full()], 3),  # failed at the start of the second chunk: nothing torn
        ([200, 100, 200, 0], 5),  # short writes, then one that makes no progress
        ([50, disk_full()], 0),  # torn in the first line
        ([disk_full()], 0),
    ],
)
def test_failed_write_counts_exactly_across_chunks(
    tmp_path: Path,
    make_sink: Callable[..., FileSink],
    monkeypatch: pytest.MonkeyPatch,
    plan: list[int | OSError | None],
    written: int,
) -> None:
    """Whichever call of whichever chunk fails, exactly the wholly written records count."""
    monkeypatch.setattr(file_module, "CHUNK_SIZE", 300)  # chunks of 3 lines: 3, 3, 1
    path = tmp_path / "app.log"
    sink = failing(make_sink, path)
    m = numbered(7)
    sink.plan = list(plan)
    assert [7 - written] == run_batches(sink, m)
    assert as_bytes(*m[:written]) == path.read_bytes()
    assert 1 == sink.errors
    assert str(sink.last_error).startswith("OSError: ")


def test_torn_line_that_cannot_be_cut_is_ended_by_the_next_write(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """A torn line that cannot be cut is ended by a newline at the next successful write."""
    path = tmp_path / "app.log"
    sink = failing(make_sink, path)
    m = numbered(5)
    sink.plan = [230, 40, disk_full(), disk_full()]  # 2 lines + 70 bytes; then the next batch
    assert [3, 1, None] == run_batches(sink, m, ["lost too"], ["after", "more"])
    assert as_bytes(m[0], m[1]) + m[2][:70].encode() + as_bytes("", "after", "more") == (
        path.read_bytes()
    )
    assert [m[0], m[1], m[2][:70], "after", "more"] == lines(path)
    assert 2 == sink.errors


def test_never_cuts_what_another_process_appended(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """What another process appended after a torn line is not cut; the next write starts a line."""
    path = tmp_path / "app.log"
    sink = failing(make_sink, path)
    m = numbered(3)

    def other_process() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"other\n")
        finally:
            os.close(fd)

    sink.interloper = other_process
    sink.plan = [150, disk_full()]
    assert [2, None] == run_batches(sink, m, ["after"])
    assert as_bytes(m[0]) + m[1][:50].encode() + as_bytes("other", "", "after") == (
        path.read_bytes()
    )


def test_torn_line_in_a_file_moved_away_adds_no_newline_to_the_new_file(
    tmp_path: Path, make_sink: Callable[..., FileSink]
) -> None:
    """The newline owed to a torn line goes to its own file only, not to logrotate's new one."""
    path = tmp_path / "app.log"
    sink = failing(make_sink, path)
    m = numbered(3)
    sink.plan = [30, 40, disk_full()]
    assert [3] == run_batches(sink, m)
    os.rename(path, tmp_path / "app.log.1")
    assert [None] == run_batches(sink, ["after"])
    assert as_bytes("after") == path.read_bytes()
    assert m[0][:70].encode() == (tmp_path / "app.log.1").read_bytes()


def test_a_device_that_is_always_full(make_sink: Callable[..., FileSink]) -> None:
    """/dev/full fails every write: each batch is counted lost with ENOSPC, no exception."""
    sink = make_sink("/dev/full")
    assert [2, 1] == run_batches(sink, ["a", "b"], ["c"])
    assert {"errors": 2, "last_error": DISK_FULL} == sink.sink_stats()


def test_no_blocking_call_on_the_loop(
    tmp_path: Path, make_sink: Callable[..., FileSink], blockbuster: Any
) -> None:
    """Writes, rotation, gzip, a cut and an owed newline make no blocking call on the loop."""
    path = tmp_path / "app.jsonl"
    sink = failing(make_sink, path)
    sink.max_bytes, sink.keep, sink.compress = 600, 1, "gzip"
    m = numbered(12)
    big = "z" * 600
    sink.plan = [None, 250, disk_full(), 230, 40, disk_full()]
    batches = [m[:3], m[3:8], m[8:], ["a"], ["b"], [big]]  # rotations before m[3:8] and big
    assert [None, 3, 2, None, None, None] == run_batches(sink, *batches)
    assert sink.wait_compressed(5)
    assert [m[3], m[4], m[8], m[9], m[10][:70], "a", "b", big] == read_all(tmp_path)
    assert 1 == len(rotated(tmp_path))
    # A blocking call would fail with BlockingError: counted here, as a third error.
    assert {"errors": 2, "last_error": DISK_FULL} == sink.sink_stats()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted for the test (needs root), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], timeout=10).returncode:
            subprocess.run(["umount", "-l", str(mount)], timeout=10, check=True)


def fill(path: Path) -> None:
    """Write *path* until the file system is full (the last ENOSPC ends it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for size in (1 << 16, 1 << 12, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)


def test_full_disk_through_the_pipeline(tmpfs: Path) -> None:
    """On a full tmpfs no line is corrupt and counts are exact; writing resumes once freed."""
    import aiolog

    path = tmpfs / "app.jsonl"
    pad = "x" * 300
    pipeline = aiolog.configure([f"file:{path}"])
    try:
        log = logging.getLogger("full")
        log.info("0 %s", pad)
        pipeline.flush()
        fill(tmpfs / "filler")  # what is left: the slack in the last page of app.jsonl
        for i in range(1, 101):
            log.info("%d %s", i, pad)
        pipeline.flush()
        [full] = pipeline.stats()["sinks"].values()
        (tmpfs / "filler").unlink()
        for i in range(101, 111):
            log.info("%d %s", i, pad)
    finally:
        pipeline.stop()
    [after] = pipeline.stats()["sinks"].values()
    # Every line must be JSON: a torn line or two records glued together would fail here.
    messages = [json.loads(line)["message"] for line in lines(path)]
    written = full["written"]
    assert 1 < written < 101  # the slack took some of the batch, not all of it
    assert (101, 0, 101 - written) == (full["offered"], full["buffered"], full["dropped_error"])
    assert full["offered"] == full["written"] + full["dropped"] + full["filtered"]
    assert "No space left on device" in full["last_error"]
    ours = [int(m.split()[0]) for m in messages if m.endswith(pad)]
    assert list(range(written)) + list(range(101, 111)) == ours
    assert (111, written + 10) == (after["offered"], after["written"])
    assert after["notices"] == len(messages) - len(ours)  # the rest: the listener's notices
    assert after["offered"] == after["written"] + after["dropped"] + after["filtered"]


# -- several processes ------------------------------------------------------------------------

PROCESSES = 4
PER_PROCESS = 2000
WIDTH = 3000


def _line(proc: int, i: int) -> str:
    return f"{proc}:{i:05d}:" + "abcd"[proc] * WIDTH


def _append_from_process(path: str, proc: int, barrier: Any) -> None:
    """Body of a child process: its own FileSink, batches of 500 long lines (1.5 MB)."""
    sink = plain(FileSink(path))
    sink.open()

    async def main() -> None:
        for start in range(0, PER_PROCESS, 500):
            await sink.write([record(_line(proc, i)) for i in range(start, start + 500)])
        await sink.aclose()

    barrier.wait(30)
    asyncio.run(main())


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    """4 processes x 2000 lines of 3 kB on one file: every line whole, none lost."""
    path = str(tmp_path / "shared.log")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=_append_from_process, args=(path, proc, barrier))
        for proc in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [0] * PROCESSES == [p.exitcode for p in procs]
    seen: dict[int, list[int]] = {proc: [] for proc in range(PROCESSES)}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"(\d):(\d{5}):", line)
        assert match, f"not a whole line: {line[:60]!r}..."
        proc, i = int(match[1]), int(match[2])
        assert _line(proc, i) == line
        seen[proc].append(i)
    assert {proc: list(range(PER_PROCESS)) for proc in range(PROCESSES)} == seen
