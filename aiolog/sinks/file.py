"""A sink that appends records to a file, with size and time rotation, retention and gzip.

:class:`FileSink` does the work of :class:`logging.FileHandler`,
:class:`~logging.handlers.RotatingFileHandler`,
:class:`~logging.handlers.TimedRotatingFileHandler` and
:class:`~logging.handlers.WatchedFileHandler` in one small class built for the listener's
event loop: formatting happens on the loop, every blocking call (open, stat, write,
rename) goes to the sink's own :attr:`~aiolog.sinks.Sink.executor`, a whole batch in one
call, and compression of rotated files runs on a second daemon thread so that it never
delays a write.

Configured in code or by URL::

    FileSink("logs/app.jsonl", rotate="10MB", keep=7, compress="gzip")
    FileSink.from_url("file:logs/app.jsonl?rotate=10MB&keep=7&compress=gzip")
    FileSink.from_url("file:///var/log/app.jsonl?when=midnight&keep=14&format=logfmt")
"""

from __future__ import annotations

import asyncio
import bisect
import calendar
import codecs
import concurrent.futures
import contextlib
import datetime
import gzip
import logging
import os
import re
import shutil
import stat
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from aiolog import _options
from aiolog._executor import DaemonExecutor
from aiolog._options import OptionError
from aiolog.sinks._base import Sink

__all__ = ["FileSink"]

#: Largest single ``write`` the sink makes: batches are cut at line boundaries into blocks
#: of at most this size (a single longer line is still written whole, in one call).
CHUNK_SIZE = 1 << 20

#: How long :meth:`FileSink.aclose` waits for a running compression.
COMPRESS_WAIT = 5.0

_INTERVALS = {"S": 1, "M": 60, "H": 60 * 60, "D": 24 * 60 * 60}
_WHEN_ALIASES = {"HOURLY": "H", "DAILY": "D"}
_WHENS = frozenset(_INTERVALS) | {"MIDNIGHT"} | {f"W{day}" for day in range(7)}

_STAMP_FORMAT = "%Y-%m-%dT%H-%M-%S"
#: The stamp in a rotated file's name: local time to the second, then six digits of
#: microseconds. Fixed width, so that names sort by their text in time order.
_STAMP_RE = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{6}"

#: Keys a ``file:`` URL's query may set: the keyword options of :class:`FileSink`.
_URL_OPTIONS = frozenset(
    {"format", "rotate", "when", "keep", "compress", "mode", "encoding", "level"}
)

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


_WHERE = "FileSink()"
_WHEN_EXPECTED = "'midnight', 'S', 'M', 'H', 'D', 'W0'-'W6', 'hourly' or 'daily'"
_MODE_EXPECTED = "permission bits up to 0o777, such as 0o640 ('640' in a URL)"


def _bad(option: str, value: object, why: str) -> OptionError:
    return OptionError(_WHERE, option, value, why)


def _parse_when(value: object) -> str:
    if isinstance(value, str):
        key = value.strip().upper()
        key = _WHEN_ALIASES.get(key, key)
        if key in _WHENS:
            return key
    raise _bad("when", value, _WHEN_EXPECTED)


def _parse_mode(value: object) -> int:
    try:
        mode = int(value.strip().removeprefix("0o"), 8) if isinstance(value, str) else value
    except ValueError:
        mode = -1
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o777:
        return mode
    raise _bad("mode", value, _MODE_EXPECTED)


def _next_rollover(when: str, now: float) -> float:
    """When a file opened (or last rotated) at *now* rotates, as a timestamp.

    As :meth:`logging.handlers.TimedRotatingFileHandler.computeRollover` in local time:
    ``S``/``M``/``H``/``D`` rotate one interval after *now*; ``MIDNIGHT`` at the next local
    midnight; ``Wn`` at the midnight that starts weekday *n* (0 is Monday), a week later if
    that is today. Daylight-saving changes are handled by :meth:`datetime.datetime.timestamp`.
    """
    if when in _INTERVALS:
        return now + _INTERVALS[when]
    day = datetime.datetime.fromtimestamp(now).date() + datetime.timedelta(days=1)
    if when.startswith("W"):
        day += datetime.timedelta(days=(int(when[1]) - day.weekday()) % 7)
    return datetime.datetime.combine(day, datetime.time()).timestamp()


def _wall_clock_us(stamp: float) -> int:
    """Return the local wall-clock time of *stamp* in microseconds, read as if it were UTC.

    These numbers order exactly as the stamps in rotated names do, even when local time
    goes back (the hour repeated at the end of daylight-saving time).
    """
    seconds, micro = divmod(round(stamp * 1_000_000), 1_000_000)
    return calendar.timegm(time.localtime(seconds)) * 1_000_000 + micro


def _stamp_text(wall_us: int) -> str:
    """Return ``YYYY-MM-DDTHH-MM-SS.ffffff`` for a :func:`_wall_clock_us` value."""
    seconds, micro = divmod(wall_us, 1_000_000)
    return f"{time.strftime(_STAMP_FORMAT, time.gmtime(seconds))}.{micro:06d}"


def _notice(message: str) -> None:
    """Tell the operator about a failure that loses no record (rotation, compression)."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(f"aiolog: {message}\n")
    except Exception:  # pragma: no cover - stderr closed or broken: nothing left to tell
        pass


def _check_writable(path: str) -> None:
    """Raise :class:`OptionError` naming *path* unless the sink can create and append to it.

    Changes nothing: a missing directory is created when the file is first opened, so a
    configuration that fails on another setting leaves no directory behind. What is
    checked is that the nearest existing ancestor is a directory this process may
    create entries in (for root, also that it is not in a file system that refuses
    new directories, such as /proc).
    """
    expected = "a path where the process can create and append to a file"
    if os.path.isdir(path):
        raise _bad("path", path, f"{expected} (it is a directory)")
    if os.path.lexists(path):
        if not os.access(path, os.W_OK):
            raise _bad("path", path, f"{expected} (the file is not writable)")
        return
    directory = os.path.dirname(path)
    missing = False
    while not os.path.lexists(directory):
        missing = True
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    if not os.path.isdir(directory):
        raise _bad("path", path, f"{expected} ({directory!r} is not a directory)")
    if not os.access(directory, os.W_OK | os.X_OK) or (missing and _refuses_dirs(directory)):
        raise _bad("path", path, f"{expected} (cannot create files in {directory!r})")


def _refuses_dirs(directory: str) -> bool:
    """True for a directory of a pseudo file system where nothing can be created (/proc)."""
    return _fs_type(directory) in _NO_FILES_FS


_NO_FILES_FS = frozenset({"proc", "sysfs"})


def _fs_type(directory: str) -> str:
    """The file system type of *directory* from /proc/self/mounts (empty if unknown)."""
    best, fstype = "", ""
    real = os.path.realpath(directory)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, fields[2]
    except OSError:
        return ""
    return fstype


def _gzip_file(path: str) -> None:
    """Compress *path* to ``path.gz`` (via a temporary name) and remove *path*.

    The compressed file keeps the permission bits and times of the original, so a log
    created ``0o640`` does not become world-readable by being compressed.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:  # already pruned by retention
        return
    target = f"{path}.gz"
    tmp = f"{target}.tmp"
    try:
        with open(path, "rb") as src:
            if os.path.lexists(tmp):
                os.remove(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(st.st_mode))
            with open(fd, "wb") as raw:
                name = os.path.basename(path)
                with gzip.GzipFile(name, "wb", fileobj=raw, mtime=int(st.st_mtime)) as gz:
                    shutil.copyfileobj(src, gz, CHUNK_SIZE)
                raw.flush()
                os.fsync(raw.fileno())
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.remove(path)


class FileSink(Sink):
    """Append formatted records to a file, one whole line per record; rotate it if asked.

    Each batch becomes one block of lines, written with one ``write`` call on a file opened
    ``O_APPEND`` and unbuffered (blocks over :data:`CHUNK_SIZE` are cut at line boundaries),
    so **several processes may append to one file**: on a local file system their lines
    never interleave (NFS does not promise this). Before each batch the sink checks that
    the path still names the file it has open and reopens it if not, like
    :class:`~logging.handlers.WatchedFileHandler`, so logrotate may move or remove the file.

    Rotation is done by this process alone: **several processes rotating one file is not
    supported** (they would race to rename it). Let one process rotate, or rotate with
    logrotate and let every process reopen.

    :param path: The file to append to. A relative path is resolved against the current
        directory now, at configure time. Missing directories are created
        when the file is first opened (building the sink changes nothing on disk).
    :param format: ``"json"``, ``"logfmt"`` or ``"text"``: the formatter from
        :func:`aiolog.formatting.formatter_for`. A formatter set later with
        :meth:`~logging.Handler.setFormatter` (as ``dictConfig`` does) wins.
    :param rotate: Rotate before a batch that would take the file over this size: bytes as
        an ``int``, or a string such as ``"500KB"``, ``"10MB"``, ``"1.5GiB"`` (units are
        binary, 1 KB = 1024 bytes, as in logrotate). A batch larger than the limit is still
        written whole, to a fresh file.
    :param when: Rotate at a time, computed like
        :class:`~logging.handlers.TimedRotatingFileHandler` in local time: ``"midnight"``,
        ``"S"``, ``"M"``, ``"H"``, ``"D"`` (one interval after the file was started) or
        ``"W0"``-``"W6"`` (the midnight starting that weekday, Monday is 0). ``"hourly"`` and
        ``"daily"`` are aliases of ``"H"`` and ``"D"``; use ``"midnight"`` for calendar days.
        The rotation happens with the first batch written after that time; a file left from
        an earlier run is dated by its modification time.
    :param keep: How many rotated files to keep (compressed or not); older ones are
        deleted. ``None`` keeps them all.
    :param compress: ``"gzip"`` compresses rotated files on a separate thread.
    :param mode: Permission bits of a file the sink creates (the umask still applies).
    :param encoding: Encoding of the text; characters it cannot encode, lone surrogates
        included, are written as backslash escapes rather than failing the batch.
    :param level: The handler's level.

    A rotated file is renamed ``{stem}.{YYYY-MM-DDTHH-MM-SS.ffffff}{suffix}`` next to the
    file (``app.jsonl`` becomes ``app.2026-11-24T21-25-22.348051.jsonl``), stamped with the
    local time of the rotation to the microsecond (for time rotation, the scheduled time),
    with ``.gz`` appended once compressed. The sink's stamps only increase: one that is not
    later than the last (rotations faster than the clock, a clock set back, the hour
    repeated when daylight-saving time ends) or whose name is taken moves on by one
    microsecond. So the names sort by their text (``ls``) in the order the files were
    rotated, at any rotation rate, and retention keeps the newest :attr:`keep` by that
    order (names left by an earlier run whose clock was ahead sort as newer). It only
    ever deletes files whose names match this pattern exactly.

    A record the formatter fails on, or whose line a failed write (a full disk) left
    unfinished, is lost: counted in ``stats()``, with the error in ``errors`` and
    ``last_error``, and nothing printed. The records whose lines are wholly in the file
    count as written. The unfinished line is cut off if the file still ends with it and
    nobody appended since (see :meth:`_cut`: the file may be shared, and another
    process's data is not ours to cut); otherwise the next write to that file starts with
    a newline, so that no record is glued to the fragment. Later batches try again as
    usual: once there is space, writing resumes by itself.

    Every bad option raises :class:`ValueError` naming the option and the value, here at
    configure time, not at the first write: so does a path that cannot be written.
    """

    #: A batch costs one hand-over to the worker thread, whatever its size: when records
    #: wait, take many at once.
    batch_records = 8192

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str = "json",
        rotate: int | str | None = None,
        when: str | None = None,
        keep: int | str | None = None,
        compress: str | None = None,
        mode: int | str = 0o640,
        encoding: str = "utf-8",
        level: int | str = logging.NOTSET,
    ) -> None:
        where = _WHERE
        level_no = _options.level(where, "level", level)
        #: The absolute path of the file.
        self.path: str = os.path.abspath(os.fspath(path))
        #: Size limit in bytes, or ``None``.
        self.max_bytes: int | None = (
            None if rotate is None else _options.size(where, "rotate", rotate)
        )
        #: Canonical rotation time (``"MIDNIGHT"``, ``"H"``, ``"W0"``, ...), or ``None``.
        self.when: str | None = None if when is None else _parse_when(when)
        #: Number of rotated files kept, or ``None`` for all.
        self.keep: int | None = None if keep is None else _options.count(where, "keep", keep, low=0)
        #: ``"gzip"`` or ``None``.
        self.compress: str | None = (
            None if compress is None else _options.choice(where, "compress", compress, ("gzip",))
        )
        #: Permission bits of new files.
        self.mode: int = _parse_mode(mode)
        try:
            bom = "".encode(encoding)
        except (LookupError, TypeError):
            raise _bad("encoding", encoding, "a known text encoding") from None
        if bom:  # utf-16, utf-8-sig...: a mark per batch would corrupt the file
            raise _bad("encoding", encoding, "an encoding that writes no byte-order mark")
        #: Text encoding of the file.
        self.encoding: str = encoding
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        fmt = _options.choice(where, "format", format, _options.FORMATS)
        _check_writable(self.path)
        rotating = self.max_bytes is not None or self.when is not None
        if rotating and os.path.exists(self.path) and not stat.S_ISREG(os.stat(self.path).st_mode):
            raise _bad("path", self.path, "a regular file, to be rotated")
        from aiolog.formatting import formatter_for

        super().__init__(level_no)
        self.formatter = formatter_for(fmt)
        self.url = f"file:{self.path}"

        directory, name = os.path.split(self.path)
        stem, suffix = os.path.splitext(name)
        self._directory = directory
        self._stem = stem
        self._suffix = suffix
        self._rotated_re = re.compile(
            rf"{re.escape(stem)}\.(?P<stamp>{_STAMP_RE}){re.escape(suffix)}(?:\.gz)?"
        )
        # State below is touched by the executor thread (between awaits of the loop).
        self._fd: int | None = None
        self._dev_ino: tuple[int, int] = (0, 0)
        #: Clock for time rotation and the names of rotated files (tests replace it).
        self._now: Callable[[], float] = time.time
        self._rollover_at: float | None = None
        #: The stamp of the last rotated name given (a :func:`_wall_clock_us` value).
        self._last_stamp = -1
        self._rotate_failing = False
        #: ``(st_dev, st_ino)`` of a file that ends with a torn line we could not cut off:
        #: the next write to that file starts with a newline.
        self._torn: tuple[int, int] | None = None
        self._compressor: DaemonExecutor | None = None
        self._compressions: list[concurrent.futures.Future[None]] = []

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileSink:
        """Build a sink from ``file:PATH?OPTIONS``; keyword *options* override the query.

        ``file:logs/app.jsonl`` is relative to the current directory, ``file:/var/log/x``
        and ``file:///var/log/x`` are absolute; the path is percent-decoded (write ``#`` as
        ``%23``). The query takes the keyword options of :class:`FileSink`, for example
        ``?format=logfmt&rotate=10MB&when=midnight&keep=7&compress=gzip&level=INFO``
        (``mode`` in octal). An unknown or repeated key raises :class:`ValueError`.
        """
        where = _options.url_where(url)
        expected = "file:relative/path or file:///absolute/path"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() != "file":
            raise OptionError(where, "url", url, f"a file: URL, {expected}")
        if parts.netloc not in ("", "localhost"):
            raise OptionError(where, "host", parts.netloc, f"no host: {expected}")
        if parts.fragment:
            raise OptionError(where, "path", parts.path, "a '#' in the path written '%23'")
        try:
            path = urllib.parse.unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            raise OptionError(where, "path", parts.path, "percent-encoded UTF-8") from None
        if not path:
            raise OptionError(where, "path", path, f"a path: {expected}")
        merged = _options.merged(where, url, options, _URL_OPTIONS)
        with _options.located(where):
            sink = cls(path, **merged)
        sink.url = url
        return sink

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Start the executor, and the compression thread if rotated files are compressed.

        The file itself is opened by the first :meth:`write`.
        """
        super().open()
        if self.compress and self.keep != 0:
            if self._compressor is None:
                self._compressor = DaemonExecutor(f"aiolog-compress:{self.display_name}")
            self._compressor.start()

    async def write(self, records: Sequence[logging.LogRecord]) -> int | None:
        """Append *records*, one line each, rotating or reopening the file first if needed.

        The lines are made here, on the listener's loop; everything that touches the file
        (reopen, rotation, the writes) is one call on the sink's worker thread, whatever
        the batch's size: the cost of handing work to a thread is paid once per batch.

        Return how many of them were lost: records the formatter failed on and, when a
        write fails part-way (a full disk), the records whose line is not wholly in the
        file. Each failure is counted in :meth:`sink_stats`, and a later batch tries
        again. The unfinished line a failed write leaves is cut off (see :meth:`_cut`) or,
        when that is not safe, ended by a newline at the start of the next write to that
        file, so no record is ever glued to it.
        """
        chunks, ends, lost = self._encode(records)
        if not chunks:
            return lost or None
        loop = asyncio.get_running_loop()
        unwritten, error = await loop.run_in_executor(self.executor, self._append, chunks, ends)
        if error is not None:
            self.note_error(error)
        return (lost + unwritten) or None

    def _append(
        self, chunks: list[bytearray], ends: list[list[int]]
    ) -> tuple[int, BaseException | None]:
        """On the worker thread: reopen or rotate if due, then write the blocks in order.

        Return how many records are not wholly in the file, and the error that stopped
        the writing (None when all were written).
        """
        pending = sum(map(len, ends))  # records in the blocks, not yet written
        try:
            self._prepare(sum(map(len, chunks)))
        except Exception as exc:
            return pending, exc
        lead = 0
        if self._torn is not None:
            if self._torn == self._dev_ino:  # end the torn line first, in the same write
                lead = 1
                chunks[0][0:0] = b"\n"
                ends[0] = [end + 1 for end in ends[0]]
            else:  # that file was rotated or moved away: nothing will follow its line
                self._torn = None
        for index, (chunk, chunk_ends) in enumerate(zip(chunks, ends, strict=True)):
            start = lead if index == 0 else 0
            done = last = 0
            view = memoryview(chunk)
            try:
                while done < len(chunk):
                    last = self._write_some(view[done:])
                    if not last:
                        raise OSError(f"write to {self.path!r} made no progress")
                    done += last
                    if start:  # the newline that ends the torn line is written
                        self._torn = None
            except Exception as exc:
                whole = bisect.bisect_right(chunk_ends, done)
                boundary = chunk_ends[whole - 1] if whole else start if done >= start else 0
                torn = done - boundary
                if torn and not self._cut(torn, last):
                    self._torn = self._dev_ino
                return pending - whole, exc
            pending -= len(chunk_ends)
        return 0, None

    def _write_some(self, data: memoryview) -> int:
        """Make one ``write`` call with *data*, on the worker thread; return the bytes taken.

        The one place the sink writes to its file (tests override it to fail on purpose).
        """
        assert self._fd is not None
        return os.write(self._fd, data)

    async def aclose(self) -> None:
        """Wait (at most :data:`COMPRESS_WAIT` seconds) for compression, then close the file."""
        if self._fd is None and self._compressor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._finish)

    def after_fork(self) -> None:
        """In a forked child: close the child's copy of the descriptor, forget the thread.

        The child has a descriptor table of its own, so this closes nothing of the
        parent's; kept open, the copy would hold a rotated-away file's disk space for as
        long as the child lives (a pool of forked workers, one copy each). The child's
        next write opens the file anew.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._compressor is not None:
            self._compressor.after_fork()
        self._compressions = []
        super().after_fork()

    def close(self) -> None:
        """Close the file if it is still open (``logging.shutdown``), then as a handler.

        The descriptor is closed on the executor, after any write in flight, so that no
        write can land in a file that reuses the number; if the executor is gone or stuck,
        it is closed here or left alone respectively.
        """
        if self._fd is not None:
            try:
                self.executor.submit(self._close_fd).result(timeout=1.0)
            except RuntimeError:  # executor shut down: no write can be in flight
                self._close_fd()
            except concurrent.futures.TimeoutError:  # a write is stuck: do not race it
                pass
        super().close()

    def wait_compressed(self, timeout: float | None = None) -> bool:
        """Block until every rotated file queued for compression is done; ``False`` on timeout.

        Compression (and, with it, retention) runs on its own thread; tests and shutdown
        code use this as the barrier.
        """
        pending = [f for f in self._compressions if not f.done()]
        _, not_done = concurrent.futures.wait(pending, timeout)
        self._compressions = [f for f in self._compressions if not f.done()]
        return not not_done

    # -- the loop side ---------------------------------------------------------------------

    def _line_encoder(self) -> Callable[[logging.LogRecord], bytes] | None:
        """The JSON formatter's bytes-out path, when it gives what :meth:`format` would.

        That is: the file is UTF-8 and the formatter is a :class:`JSONFormatter` whose
        ``format`` is not overridden. With orjson this skips a ``str`` round trip per line.
        """
        from aiolog.formatting import JSONFormatter

        formatter = self.formatter
        if (
            self._utf8
            and isinstance(formatter, JSONFormatter)
            and type(formatter).format is JSONFormatter.format
        ):
            return formatter.format_line
        return None

    def _encode(
        self, records: Sequence[logging.LogRecord]
    ) -> tuple[list[bytearray], list[list[int]], int]:
        """Format and encode *records* into blocks of whole lines of at most CHUNK_SIZE.

        Return the blocks, where each line ends in each block (the offset after its
        newline: what a failed write is measured against), and how many records the
        formatter failed on. Those are left out and noted in :meth:`sink_stats`, without
        a traceback printed per record as ``handleError`` would.

        Lines are appended to a ``bytearray`` as they come rather than kept until a join:
        orjson's output is then freed at once, which is much cheaper for the allocator
        than keeping thousands of its over-allocated buffers alive (docs/design.md has
        the figures).
        """
        chunks: list[bytearray] = []
        ends: list[list[int]] = []
        block = bytearray()
        block_ends: list[int] = []
        failed = len(records)  # each line made counts itself off
        encode = self._line_encoder() or self._encode_line
        for line in self.render(records, encode):
            failed -= 1
            if block and len(block) + len(line) > CHUNK_SIZE:
                chunks.append(block)
                ends.append(block_ends)
                block = bytearray()
                block_ends = []
            block += line
            block_ends.append(len(block))
        if block:
            chunks.append(block)
            ends.append(block_ends)
        return chunks, ends, failed

    def _encode_line(self, record: logging.LogRecord) -> bytes:
        """One record as a line of the file's text encoding (unencodable: escaped)."""
        return f"{self.format(record)}\n".encode(self.encoding, "backslashreplace")

    # -- the executor side -----------------------------------------------------------------

    def _prepare(self, size: int) -> None:
        """Reopen the file if it was moved away or never opened, rotate it if due."""
        if self._fd is not None and self._moved_away():
            self._close_fd()
        if self._fd is None:
            self._open_fd()
        if self.max_bytes or self.when:
            self._rotate_if_due(size)

    def _cut(self, torn: int, last: int) -> bool:
        """Cut the last *torn* bytes, a line a failed write left unfinished, off the file.

        Only when they are surely ours and still at the end: they all came from the last
        ``write`` call (*last* bytes, which ``O_APPEND`` put at the end of the file then),
        and the file's size is still our descriptor's position, so nobody appended since.
        Another process appending between that check and the cut (two system calls apart)
        would lose its line; nothing can close that gap without a lock every writer takes.
        Return False when the fragment must stay.
        """
        fd = self._fd
        if fd is None or torn > last:
            return False
        try:
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_size != end:
                return False
            os.ftruncate(fd, end - torn)
        except OSError:  # not seekable, not a regular file, an append-only file...
            return False
        return True

    def _open_fd(self) -> None:
        os.makedirs(self._directory, exist_ok=True)
        fd = os.open(self.path, _OPEN_FLAGS, self.mode)
        st = os.fstat(fd)
        self._fd = fd
        self._dev_ino = (st.st_dev, st.st_ino)
        if self.when and self._rollover_at is None:
            started = st.st_mtime if st.st_size else self._now()
            self._rollover_at = _next_rollover(self.when, started)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _moved_away(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._dev_ino

    def _rotate_if_due(self, size: int) -> bool:
        assert self._fd is not None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        now = self._now()
        timed = self._rollover_at is not None and now >= self._rollover_at
        if st.st_size == 0:
            if timed and self.when:  # nothing to rotate: start the next interval
                self._rollover_at = _next_rollover(self.when, now)
            return False
        if not timed and not (self.max_bytes and st.st_size + size > self.max_bytes):
            return False
        stamp = self._rollover_at if timed and self._rollover_at is not None else now
        target = self._rotated_name(stamp)
        try:
            os.rename(self.path, target)
        except OSError as exc:
            if not self._rotate_failing:
                _notice(f"{self.display_name}: cannot rotate to {target!r}, appending: {exc}")
            self._rotate_failing = True
            return False
        self._rotate_failing = False
        if self.when:
            self._rollover_at = _next_rollover(self.when, now)
        self._close_fd()
        self._after_rotation(target)
        self._open_fd()
        return True

    def _rotated_name(self, stamp: float) -> str:
        """Return the name for a file rotated at *stamp*, later than every name given before.

        The stamp moves on by one microsecond from the last one this sink used when the
        clock gives one that is not later (rotations faster than the clock's resolution, a
        clock set back, the hour repeated when daylight-saving time ends), and from a name
        that is taken (compressed or being compressed included): names stay unique and
        sort in the order the files were rotated.
        """
        wall = max(_wall_clock_us(stamp), self._last_stamp + 1)
        while True:
            name = os.path.join(self._directory, f"{self._stem}.{_stamp_text(wall)}{self._suffix}")
            if not any(os.path.lexists(n) for n in (name, f"{name}.gz", f"{name}.gz.tmp")):
                self._last_stamp = wall
                return name
            wall += 1

    def _after_rotation(self, rotated: str) -> None:
        """Compress *rotated* on the compression thread then prune, or prune now."""
        if self.compress and self.keep != 0:
            if self._compressor is None:
                self._compressor = DaemonExecutor(f"aiolog-compress:{self.display_name}")
            try:
                future = self._compressor.submit(self._compress_and_prune, rotated)
            except RuntimeError as exc:  # no new thread at interpreter exit: keep it as is
                _notice(f"{self.display_name}: left {rotated!r} uncompressed: {exc}")
            else:
                self._compressions = [f for f in self._compressions if not f.done()]
                self._compressions.append(future)
                return
        self._prune()

    def _compress_and_prune(self, rotated: str) -> None:
        try:
            _gzip_file(rotated)
        except OSError as exc:
            _notice(f"{self.display_name}: could not compress {rotated!r}: {exc}")
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest rotated files (compressed or not) beyond :attr:`keep`.

        Age is the stamp in the name; a file and its compressed copy (while compression
        runs) count once.
        """
        if self.keep is None:
            return
        groups: dict[str, list[str]] = {}
        try:
            names = os.listdir(self._directory)
        except OSError as exc:
            _notice(f"{self.display_name}: cannot list {self._directory!r}: {exc}")
            return
        for name in names:
            match = self._rotated_re.fullmatch(name)
            if match:
                groups.setdefault(match["stamp"], []).append(name)
        for key in sorted(groups, reverse=True)[self.keep :]:
            for name in groups[key]:
                try:
                    os.remove(os.path.join(self._directory, name))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    _notice(f"{self.display_name}: cannot delete {name!r}: {exc}")

    def _finish(self) -> None:
        """On the executor: wait for compression (bounded), stop its thread, close the file."""
        if self.wait_compressed(COMPRESS_WAIT) and self._compressor is not None:
            self._compressor.shutdown(wait=True)
            self._compressor = None
        self._close_fd()
