"""``stderr`` and ``stdout`` sinks: readable text on a terminal, JSON lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from aiolog import _options
from aiolog._record import expose_context
from aiolog.sinks._base import Sink

__all__ = ["StreamSink"]

_NAMES = ("stderr", "stdout")
_URL_OPTIONS = ("format", "colors", "level")


class StreamSink(Sink):
    """Write records to the process's standard error or standard output.

    :param stream: ``"stderr"`` (default) or ``"stdout"``: looked up in :mod:`sys` at each
        write, so a stream replaced later (pytest's capture, a daemon's redirect) is honoured.
        Any other text stream object is written to as it is.
    :param format: ``"text"``, ``"json"`` or ``"logfmt"``. By default text (with colours)
        when the stream is a terminal and JSON otherwise, decided when the sink opens.
        A formatter set with :meth:`setFormatter` (as dictConfig does) wins.
    :param colors: force colours on or off for the text format (``NO_COLOR`` still wins).

    Writes happen on the sink's worker thread: a blocked pipe stalls this sink only. The
    stream is never switched to non-blocking mode (that would break the rest of the
    process's output).
    """

    def __init__(
        self,
        stream: str | TextIO = "stderr",
        *,
        format: str | None = None,
        colors: bool | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        where = f"{type(self).__name__}()"
        if isinstance(stream, str):
            stream = _options.choice(where, "stream", stream, _NAMES)
            url = stream
        else:
            url = f"stream:{getattr(stream, 'name', type(stream).__name__)}"
        if format is not None:
            format = _options.choice(where, "format", format, _options.FORMATS)
        if colors is not None:
            colors = _options.boolean(where, "colors", colors)
        super().__init__(_options.level(where, "level", level))
        self.url = url
        self._stream = stream
        self._format = format
        self._colors = colors
        self._auto_formatter: logging.Formatter | None = (
            self._make_formatter(format) if format is not None else None
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> StreamSink:
        """Build from ``stderr``, ``stdout`` or ``stderr:?format=json&level=INFO``."""
        name = url.split(":", 1)[0].split("?", 1)[0].lower()
        where = _options.url_where(url)
        query = url.partition("?")[2]
        merged = _options.merged(where, f"{name}:?{query}", options, _URL_OPTIONS)
        with _options.located(where):
            return cls(
                name,
                format=merged.get("format"),
                colors=merged.get("colors"),
                level=merged.get("level", logging.NOTSET),
            )

    def _make_formatter(self, fmt: str) -> logging.Formatter:
        from aiolog.formatting import formatter_for

        if fmt.lower() == "text":
            return formatter_for("text", colors=bool(self._colors))
        return formatter_for(fmt)

    def _target(self) -> TextIO:
        stream = self._stream
        if isinstance(stream, str):
            return getattr(sys, stream) or getattr(sys, f"__{stream}__")  # type: ignore[no-any-return]
        return stream

    def open(self) -> None:
        """Choose the automatic format for the stream as it is now, and start the worker."""
        super().open()
        if self._auto_formatter is None:
            try:
                tty = self._target().isatty()
            except (AttributeError, ValueError):
                tty = False
            from aiolog.formatting import formatter_for

            if tty:
                colors = True if self._colors is None else self._colors
                self._auto_formatter = formatter_for("text", colors=colors)
            else:
                self._auto_formatter = formatter_for("json")

    def format(self, record: logging.LogRecord) -> str:
        """Format with the handler's formatter if one was set, else the automatic one."""
        if self.formatter is not None:
            expose_context(record)
        formatter = self.formatter or self._auto_formatter
        if formatter is None:
            self.open()
            formatter = self._auto_formatter
        assert formatter is not None
        return formatter.format(record)

    def _write_text(self, text: str) -> None:
        stream = self._target()
        try:
            stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Format the batch and write it in one call on the worker thread.

        Return how many records the formatter failed on (they are lost, see
        :meth:`~aiolog.sinks.Sink.render`).
        """
        lines = list(self.render(records, self._line))
        if lines:
            text = "".join(lines)
            await asyncio.get_running_loop().run_in_executor(self.executor, self._write_text, text)
        return len(records) - len(lines)

    def _line(self, record: logging.LogRecord) -> str:
        return f"{self.format(record)}\n"
