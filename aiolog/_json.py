"""The JSON lines formatter, and the cache that assembles ordinary lines from bytes.

:class:`JSONFormatter` (re-exported by :mod:`aiolog.formatting`) encodes
:func:`aiolog._fields._build`'s dict with :mod:`aiolog._encode`; with :mod:`orjson`,
:class:`_LineCache` writes the usual record from pieces encoded once per logger and per
task, byte for byte the same line.
"""

from __future__ import annotations

import logging
from typing import Any

from aiolog import _encode
from aiolog._encode import (
    _JSON_SCALARS,
    _NON_STR,
    _default,
    _encode_line,
    _encode_strict,
    _normalize,
)
from aiolog._encode import _encode as _encode_text
from aiolog._fields import (
    _SCHEMA_KEYS,
    _build,
    _context_parts,
    _extra_keys,
    _fallback,
    _get_level_name,
    _rfc3339,
    _StructuredFormatter,
)

__all__ = ["JSONFormatter"]


class JSONFormatter(_StructuredFormatter):
    """Format each record as one line of JSON: :func:`record_to_dict`, encoded by :func:`dumps`.

    ``JSONFormatter()`` takes the :class:`logging.Formatter` arguments first, so that
    ``logging.config.dictConfig`` can build it with ``"()"`` or ``"class"``; ``fmt``,
    ``style``, ``validate`` and ``defaults`` are checked by the base class but do not
    change the output, and ``datefmt`` is ignored (timestamps are always RFC 3339 UTC).

    :param contextvars: which context variables go into ``"context"`` (see
        :func:`record_to_dict`).
    :param location: add ``file``, ``line`` and ``function``.
    :param static_fields: fields added to every line, after ``"context"`` (for example
        ``{"service": "api", "env": "prod"}``). Their names may not be those of built-in
        fields; an ``extra=`` field with the same name moves into ``"extra"``.

    Override :meth:`to_dict` to rename, drop or add fields.
    """

    _builtin_keys = _SCHEMA_KEYS

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The dict :meth:`format` encodes, its values already converted for JSON."""
        return _build(
            record,
            self.contextvars,
            self.location,
            self.static_fields,
            self._reserved,
            json_ready=True,
        )

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object, on one line, without a trailing newline; never raises."""
        try:
            return _encode_text(self.to_dict(record))
        except Exception as exc:
            return _encode_strict(_fallback(record, exc))

    def format_line(self, record: logging.LogRecord) -> bytes:
        """:meth:`format` plus ``"\\n"``, encoded as UTF-8; never raises.

        What the file sink writes: with orjson the line is encoded straight to bytes,
        without the round trip through ``str``, and an ordinary record (a text message, no
        traceback, no structlog fields, extras whose names are free) is assembled from
        pieces cached per logger and per task (see :class:`_LineCache`), byte for byte
        the line the dict would encode to. A subclass that overrides :meth:`format` is
        written through its ``format`` instead (see :class:`aiolog.sinks.file.FileSink`),
        and one that overrides :meth:`to_dict` never takes the cached path.
        """
        lines = self._lines
        if lines is not None:
            line = lines.line(record)
            if line is not None:
                return line
        try:
            return _encode_line(self.to_dict(record))
        except Exception as exc:
            return f"{_encode_strict(_fallback(record, exc))}\n".encode()

    @property
    def _lines(self) -> _LineCache | None:
        """The cached path, when orjson is installed and :meth:`to_dict` is this class's."""
        try:
            cache: _LineCache | None = self.__dict__["_line_cache"]
        except KeyError:
            plain = _encode._orjson is not None and type(self).to_dict is JSONFormatter.to_dict
            cache = _LineCache(self) if plain and not self.location else None
            self.__dict__["_line_cache"] = cache
        return cache


class _LineCache:
    """The JSON line of an ordinary record, from pieces that repeat, cached as bytes.

    Most of a line repeats from one record to the next: the level and logger name, the
    task, coroutine, thread and process, the static fields. They are encoded once per
    distinct value (by orjson, as :func:`_encode_line` would encode them inside the whole
    dict) and joined with what changes: the timestamp, the message, the context variables
    and the ``extra=`` fields. :meth:`line` returns ``None`` for any record it does not
    handle exactly as :func:`_build` would (a traceback, a stack, a loop callback, a
    structlog event or bound variables, an extra field named like a built-in one, a
    value orjson refuses): the formatter then takes the dict path.
    """

    #: Entries per cache before it is emptied (logger names and tasks made on the fly).
    LIMIT = 4096

    def __init__(self, formatter: JSONFormatter) -> None:
        self.select = formatter.contextvars
        self.reserved = formatter._reserved
        static = formatter.static_fields
        self.static = b"," + _encode._orjson.dumps(static)[1:-1] if static else b""
        self.seconds: tuple[int, bytes] = (-1, b"")
        self.heads: dict[tuple[int, str, str], bytes] = {}
        self.tails: dict[tuple[Any, Any, Any, Any], bytes] = {}

    def line(self, record: logging.LogRecord) -> bytes | None:
        """The record's line, or ``None`` when it is not an ordinary record."""
        d = record.__dict__
        message = d.get("message")
        if (
            message.__class__ is not str
            or record.msg.__class__ is not str
            or record.exc_info
            or record.exc_text
            or record.stack_info
            or d.get("aiolog_callback") is not None
        ):
            return None
        dumps = _encode._orjson.dumps
        micros = round(record.created * 1_000_000)
        second, prefix = self.seconds
        if second != micros // 1_000_000:
            second = micros // 1_000_000
            text = _rfc3339(record.created)
            prefix = b'{"timestamp":"' + text[: text.index(".") + 1].encode()
            self.seconds = (second, prefix)
        head = self.heads.get((record.levelno, record.levelname, record.name))
        if head is None:
            head = self._head(record)
        tail_key = (d.get("taskName"), d.get("aiolog_coro"), record.threadName, record.process)
        tail = self.tails.get(tail_key)
        if tail is None:
            tail = self._tail(tail_key)
        try:
            text_json = dumps(message)
            rest = self._rest(record, d) if self.rest_possible(record) else b"}\n"
        except Exception:  # what orjson refuses (lone surrogates...): the dict path decides
            return None
        if rest is None:
            return None
        return b"".join((prefix, b"%06d" % (micros % 1_000_000), head, text_json, tail, rest))

    def rest_possible(self, record: logging.LogRecord) -> bool:
        """True when the line may have more than the fixed fields (context, static, extras)."""
        if self.static:
            return True
        if getattr(record, "aiolog_extras", None) != ():
            return True
        if self.select is False:
            return False
        context = getattr(record, "aiolog_context", None)
        return context is not None and len(context) > 0

    def _rest(self, record: logging.LogRecord, d: dict[str, Any]) -> bytes | None:
        """The context, static and extra fields, and the end of the line (None: the dict path)."""
        dumps = _encode._orjson.dumps
        parts = []
        if self.select is not False:
            context = getattr(record, "aiolog_context", None)
            if context is not None and len(context):
                variables, bound = _context_parts(context, self.select, True)
                if bound:
                    return None  # structlog's bound variables: top-level fields
                if variables:
                    parts.append(b',"context":')
                    parts.append(dumps(variables, default=_default, option=_NON_STR))
        if self.static:
            parts.append(self.static)
        extras = _extra_keys(record)
        if extras:
            fields: dict[Any, Any] = {}
            for name in extras:
                if name in self.reserved:
                    return None  # it goes under "extra": the dict path
                value = d[name]
                if value.__class__ not in _JSON_SCALARS:
                    value = _normalize(value)
                fields[name] = value
            parts.append(b"," + dumps(fields, default=_default, option=_NON_STR)[1:-1])
        parts.append(b"}\n")
        return b"".join(parts)

    def _head(self, record: logging.LogRecord) -> bytes:
        dumps = _encode._orjson.dumps
        level = _get_level_name(record.levelno).lower()
        head = b'Z","level":' + dumps(level) + b',"logger":' + dumps(record.name) + b',"message":'
        self._store(self.heads, (record.levelno, record.levelname, record.name), head)
        return head

    def _tail(self, key: tuple[Any, Any, Any, Any]) -> bytes:
        dumps = _encode._orjson.dumps
        task, coro, thread, process = key
        tail = b',"task":' + dumps(task) + b',"coro":' + dumps(coro)
        tail += b',"thread":' + dumps(thread) + b',"process":' + dumps(process)
        self._store(self.tails, key, tail)
        return tail

    def _store(self, cache: dict[Any, bytes], key: Any, value: bytes) -> None:
        if len(cache) >= self.LIMIT:
            cache.clear()
        cache[key] = value
