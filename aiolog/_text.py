"""The formatters for people and for ``key=value`` tools: text and logfmt.

:class:`TextFormatter` and :class:`LogfmtFormatter` (re-exported by
:mod:`aiolog.formatting`) render the fields of :mod:`aiolog._fields` as one readable line
(text adds the traceback and, for asyncio's pitfalls, their details on indented lines
below) or as one line of logfmt pairs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Final

from aiolog._encode import dumps
from aiolog._fields import (
    _SCHEMA_KEYS,
    _build,
    _context,
    _ContextVarsOption,
    _exception,
    _extra_keys,
    _fallback,
    _FormatStyle,
    _message,
    _structlog_fields,
    _StructuredFormatter,
)
from aiolog._record import safe_repr
from aiolog._record import safe_str as _safe_str

__all__ = ["LogfmtFormatter", "TextFormatter"]

# ---------------------------------------------------------------------------- logfmt

_LOGFMT_RENAMED: Final = {"timestamp": "ts", "message": "msg"}
#: Names logfmt output uses for built-in fields beyond :data:`_SCHEMA_KEYS`.
_LOGFMT_KEYS: Final = frozenset({"ts", "msg", "exc_type", "exc_message", "exc_traceback"})
# Characters that force quotes in a value, and that are replaced by "_" in a key: whitespace,
# '=', '"', control and line-separator characters, and lone surrogates (escaped in values as
# \udXXX so the line stays valid UTF-8).
_LOGFMT_UNSAFE: Final = re.compile('[\\s="\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
# Characters escaped as \uXXXX inside quotes (the common ones have short escapes).
_LOGFMT_RARE: Final = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _logfmt_key(key: str) -> str:
    """``key`` made safe as a logfmt key: unsafe characters become ``_``."""
    if key and _LOGFMT_UNSAFE.search(key) is None:
        return key
    return _LOGFMT_UNSAFE.sub("_", _safe_str(key)) or "_"


def _rare_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _logfmt_value(value: object) -> str:
    """``value`` as a logfmt value: bare when safe, else quoted and escaped on one line."""
    cls = value.__class__
    if cls is str:
        text: str = value  # type: ignore[assignment]
    elif cls is bool:
        text = "true" if value else "false"
    elif cls is int or cls is float:
        text = _safe_str(value)
    elif isinstance(value, (dict, list, tuple)):
        text = dumps(value)
    else:
        text = _safe_str(value)
    if text and _LOGFMT_UNSAFE.search(text) is None:
        return text
    text = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    if _LOGFMT_RARE.search(text) is not None:
        text = _LOGFMT_RARE.sub(_rare_escape, text)
    return f'"{text}"'


class LogfmtFormatter(_StructuredFormatter):
    """Format each record as one line of logfmt ``key=value`` pairs.

    ::

        ts=2026-11-24T21:25:22.123456Z level=info logger=app msg="hello world" \\
        task=fetch-42 coro=fetch thread=MainThread process=123 ctx.request_id=r-1 user=ann

    The fields are those of :func:`record_to_dict`, in the same order, with these changes:
    ``timestamp`` is ``ts`` and ``message`` ``msg``; ``None`` values are left out; the
    exception becomes ``exc_type``, ``exc_message`` and ``exc_traceback``; context
    variables become ``ctx.NAME``; ``extra=`` fields whose names collide with these become
    ``extra.NAME``; dicts and lists are written as compact JSON. Values containing spaces,
    ``=``, ``"`` or control characters are quoted, with ``\\``, ``"``, newlines and tabs
    escaped, so a record is always exactly one line.

    Takes the :class:`logging.Formatter` arguments first, like :class:`JSONFormatter`.

    :param contextvars: which context variables to include (see :func:`record_to_dict`).
    :param location: add ``file``, ``line`` and ``function``.
    :param static_fields: pairs added to every line, after the context variables.
    """

    _builtin_keys = _SCHEMA_KEYS | _LOGFMT_KEYS

    def _key(self, key: str) -> str:
        """The logfmt key of an ``extra=`` or static field: safe, and distinct from ours."""
        safe = self._keys.get(key)
        if safe is None:
            safe = _logfmt_key(key)
            if safe.startswith(("ctx.", "extra.")) or (safe != key and safe in self._reserved):
                safe = f"extra.{safe}"
            if len(self._keys) >= 4096:  # extra= keys can be unbounded: keep the cache small
                self._keys.clear()
            self._keys[key] = safe
        return safe

    def format(self, record: logging.LogRecord) -> str:
        """One line of ``key=value`` pairs, without a trailing newline; never raises."""
        try:
            fields = _build(
                record,
                self.contextvars,
                self.location,
                self.static_fields,
                self._reserved,
                json_ready=False,
            )
        except Exception as exc:
            fields = _fallback(record, exc)
        parts: list[str] = []
        for key, value in fields.items():
            if value is None:
                continue
            if key not in _SCHEMA_KEYS:
                parts.append(f"{self._key(key)}={_logfmt_value(value)}")
            elif key == "exception":
                for part in ("type", "message", "traceback"):
                    if value[part] is not None:
                        parts.append(f"exc_{part}={_logfmt_value(value[part])}")
            elif key == "context" or key == "extra":
                prefix = "ctx." if key == "context" else "extra."
                for name, item in value.items():
                    if item is not None:
                        parts.append(f"{prefix}{_logfmt_key(name)}={_logfmt_value(item)}")
            else:
                parts.append(f"{_LOGFMT_RENAMED.get(key, key)}={_logfmt_value(value)}")
        return " ".join(parts)


# ---------------------------------------------------------------------------- text

_RESET: Final = "\x1b[0m"
_DIM: Final = "\x1b[2m"
_LEVEL_COLORS: Final = (  # (lowest level, color): the first that the record's level reaches
    (logging.CRITICAL, "\x1b[1;31m"),  # bold red
    (logging.ERROR, "\x1b[31m"),  # red
    (logging.WARNING, "\x1b[33m"),  # yellow
    (logging.INFO, "\x1b[32m"),  # green
    (logging.NOTSET, "\x1b[34m"),  # blue
)
# str values shown bare in text; anything else (spaces, quotes, '=', control) is repr'd.
_TEXT_BARE: Final = re.compile(r"[^\s=\"'\x00-\x1f\x7f-\x9f]+")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text_value(value: object) -> str:
    """``value`` for a ``key=value`` in text: a plain str bare, anything else its repr."""
    if value.__class__ is str and _TEXT_BARE.fullmatch(value):
        return value
    return safe_repr(value)


# Characters a detail line shows only escaped: controls other than tab and newline.
_DETAIL_ESCAPED: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _detail_lines(key: str, value: object) -> list[str]:
    """The indented lines of one detail of an asyncio pitfall record (see TextFormatter).

    A string is shown as it is (its own line needs no quotes), a list of strings (where
    the task or coroutine was created) one item per line, anything else as its ``repr()``.
    Every line is indented, continuation lines included, so no value can pass for a record
    of its own.
    """
    if isinstance(value, (list, tuple)) and all(item.__class__ is str for item in value):
        label = f"{key} (most recent call last)" if key == "source_traceback" else key
        return [f"    {label}:", *(f"      {_detail_text(item)}" for item in value)]
    text = _detail_text(value) if value.__class__ is str else safe_repr(value)
    return [f"    {key}: {text}"]


def _detail_text(text: str) -> str:
    """``text`` for a detail line: controls escaped, continuation lines indented."""
    if _DETAIL_ESCAPED.search(text) is not None:
        text = _DETAIL_ESCAPED.sub(lambda m: repr(m.group())[1:-1], text)
    return text.replace("\r\n", "\n").replace("\n", "\n      ")


def _level_color(levelno: int) -> str:
    """The ANSI colour of a level: that of the highest standard level it reaches."""
    for floor, color in _LEVEL_COLORS:
        if levelno >= floor:
            return color
    return ""


def _no_color() -> bool:
    """Whether the ``NO_COLOR`` convention (https://no-color.org) forbids colours."""
    return bool(os.environ.get("NO_COLOR"))


class TextFormatter(_StructuredFormatter):
    """Format each record as human-readable text, with the traceback on the lines below::

        2026-11-24 21:25:22.123 INFO     app.db: connected [task=fetch-42 coro=fetch] host=db-1

    The asyncio origin is shown in brackets (``[task=NAME coro=QUALNAME]``, or
    ``[callback=QUALNAME]`` for a loop callback) together with the selected context
    variables; ``extra=`` fields follow as ``key=value``, strings bare when they contain no
    spaces or quotes and everything else as its ``repr()``.

    The records of :mod:`aiolog.asyncio_diag` (those with a ``diagnostic`` field) carry
    long details: the future's or handle's ``repr()``, where the task was created. The
    first line keeps the message and ``diagnostic=KIND``; each detail follows on an
    indented line of its own (``source_traceback`` one frame per line), before the
    traceback, much as asyncio's own handler prints them::

        2026-11-24 21:25:22.123 ERROR    asyncio: Task exception was never retrieved \
        [task=fetch coro=fetch] diagnostic=never_retrieved
            future: <Task finished name='fetch' coro=<fetch() done, ...> exception=KeyError()>
            source_traceback (most recent call last):
              app.py:10 in main
        Traceback (most recent call last):
          ...

    Takes the :class:`logging.Formatter` arguments first, like :class:`JSONFormatter`;
    ``datefmt``, if given, is a :func:`time.strftime` format used instead of
    ``%Y-%m-%d %H:%M:%S.mmm``, and :attr:`converter` is honoured as by the base class.

    :param contextvars: which context variables to show (see :func:`record_to_dict`).
    :param location: show ``(file.py:42 in func)`` after the logger name.
    :param utc: show UTC (marked with ``Z``) instead of local time.
    :param colors: colour the level name and dim the timestamp with ANSI escapes.
        ``None`` (the default) means no colours; the stream sink passes ``True`` for a
        terminal. A non-empty ``NO_COLOR`` environment variable (read when ``colors``
        is set) turns colours off whatever this says.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: _FormatStyle = "%",
        validate: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
        contextvars: _ContextVarsOption = True,
        location: bool = False,
        utc: bool = False,
        colors: bool | None = None,
    ) -> None:
        super().__init__(
            fmt,
            datefmt,
            style,
            validate,
            defaults=defaults,
            contextvars=contextvars,
            location=location,
        )
        self.utc = utc
        self.colors = colors
        self._second: tuple[int, str] = (-1, "")

    @property
    def colors(self) -> bool:
        """Whether lines are coloured: as configured, unless ``NO_COLOR`` is set."""
        return self._colors

    @colors.setter
    def colors(self, value: bool | None) -> None:
        self._colors = bool(value) and not _no_color()

    def _time(self, created: float) -> str:
        """The timestamp column; the part up to the second is cached."""
        millis = round(created * 1_000_000) // 1000
        seconds = millis // 1000
        cached = self._second
        if cached[0] != seconds:
            t = time.gmtime(seconds) if self.utc else self.converter(seconds)
            if self.datefmt:
                prefix = time.strftime(self.datefmt, t)
            else:
                prefix = (
                    f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
                    f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
                )
            cached = (seconds, prefix)
            self._second = cached
        if self.datefmt:
            return cached[1]
        fraction = str(millis % 1000).zfill(3)
        return f"{cached[1]}.{fraction}Z" if self.utc else f"{cached[1]}.{fraction}"

    def _line(self, record: logging.LogRecord) -> str:
        stamp = self._time(record.created)
        levelno = record.levelno
        level = f"{logging.getLevelName(levelno):<8}"
        if self._colors:
            color = _level_color(levelno)
            stamp = f"{_DIM}{stamp}{_RESET}"
            level = f"{color}{level}{_RESET}"
        where = ""
        if self.location:
            where = f" ({record.filename}:{record.lineno} in {record.funcName})"
        parts = [f"{stamp} {level} {record.name}{where}: {_message(record)}"]

        origin = []
        task = getattr(record, "taskName", None)
        if task is not None:
            origin.append(f"task={_text_value(task)}")
        coro = getattr(record, "aiolog_coro", None)
        if coro is not None:
            origin.append(f"coro={_text_value(coro)}")
        callback = getattr(record, "aiolog_callback", None)
        if callback is not None:
            origin.append(f"callback={_text_value(callback)}")
        if self.contextvars is not False:
            context = getattr(record, "aiolog_context", None)
            if context is not None:
                for name, value in _context(context, self.contextvars).items():
                    origin.append(f"{name}={_text_value(value)}")
        if origin:
            parts.append(f"[{' '.join(origin)}]")
        if record.msg.__class__ is not str:
            for key, value in _structlog_fields(record, {}):
                parts.append(f"{key}={_text_value(value)}")
        attributes = record.__dict__
        details: list[str] | None = [] if "diagnostic" in attributes else None
        for key in _extra_keys(record):
            if details is not None and key != "diagnostic":
                details.extend(_detail_lines(key, attributes[key]))
            else:
                parts.append(f"{key}={_text_value(attributes[key])}")
        text = " ".join(parts)
        if details:
            text = "\n".join([text, *details])

        if record.exc_info or record.exc_text:
            exception = _exception(record)
            if exception is not None and exception["traceback"]:
                text = f"{text}\n{exception['traceback']}"
        if record.stack_info:
            text = f"{text}\n{record.stack_info}"
        return text

    def format(self, record: logging.LogRecord) -> str:
        """The record as text (several lines with a traceback); never raises.

        The result is always encodable as UTF-8: lone surrogates are shown as ``\\udXXX``.
        """
        try:
            text = self._line(record)
        except Exception as exc:
            text = " ".join(
                f"{key}={_text_value(value)}" for key, value in _fallback(record, exc).items()
            )
        if not text.isascii() and _SURROGATE.search(text) is not None:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text
