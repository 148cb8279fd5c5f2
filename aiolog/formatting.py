"""Turn log records into lines: one structured form, rendered as JSON, logfmt or text.

Formatters run in the listener thread, on records the emit path has already copied and
frozen (see :mod:`aiolog._record`). Three rules shape everything here:

* **Never raise.** A bad record (a message whose arguments do not fit, an object whose
  ``__str__`` or ``__repr__`` fails, a lone surrogate, a cyclic ``extra=`` value) still
  yields a line. If something unforeseen fails anyway, ``format()`` returns a minimal line
  carrying an ``aiolog_error`` field instead of raising into the sink.
* **Never mutate the record.** Several sinks read the same record object, possibly from
  different threads, so nothing here calls :meth:`logging.Formatter.format` (which sets
  ``record.message``, ``record.asctime`` and ``record.exc_text``); everything is computed
  into locals.
* **Be fast.** Formatting is on the drain path: the per-second part of each timestamp is
  cached, JSON goes through :mod:`orjson` when it is installed, and values are only walked
  where they can be arbitrary (``extra=`` fields and context variables).

The structured form, :func:`record_to_dict`, has these keys, in this order::

    timestamp   "2026-11-24T21:25:22.123456Z"   RFC 3339, UTC, microseconds
    level       "info"                          lower-case level name
    logger      "app.db"                        record.name
    message     "connected to db-1"             msg % args, rendered safely
    task        "fetch-42" | null               asyncio task name
    coro        "fetch" | null                  qualified name of the task's coroutine
    thread      "MainThread"                    thread name
    process     12345                           process id
    file, line, function                        only with location=True
    callback    "Pool._reap"                    only for records logged from a loop callback
    exception   {"type", "message", "traceback"} only with exc_info / exc_text
    stack       "Stack (most recent call last):..."   only with stack_info
    context     {"db": "main"}                  contextvars at emit time, only if any
    ...         structlog fields, at top level: the event dict's keys and the variables
                bound with structlog.contextvars (request_id="r-1"), in that order
    ...         extra= fields, at top level
    extra       {...}                           fields whose names collide with the above

:class:`JSONFormatter` writes that dict as one JSON line; :class:`LogfmtFormatter` and
:class:`TextFormatter` render the same information as ``key=value`` pairs and as
human-readable text. :func:`formatter_for` picks one by name, for configuration strings.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import re
import time
import traceback
import types
import uuid
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from operator import itemgetter
from typing import Any, Final, Literal

from aiolog._record import extra_items, get_message, safe_repr
from aiolog._record import safe_str as _safe_str

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    _orjson = None  # type: ignore[assignment,unused-ignore]

_get_level_name = logging.getLevelName
_LINE_OPTIONS = 0 if _orjson is None else _orjson.OPT_NON_STR_KEYS | _orjson.OPT_APPEND_NEWLINE
_NON_STR = 0 if _orjson is None else _orjson.OPT_NON_STR_KEYS

__all__ = [
    "JSONFormatter",
    "LogfmtFormatter",
    "TextFormatter",
    "dumps",
    "formatter_for",
    "record_to_dict",
]

_FormatStyle = Literal["%", "{", "$"]

#: Which context variables to include: all public ones (``True``), none (``False``), or
#: exactly the named ones.
_ContextVarsOption = bool | Collection[str]

#: Every key :func:`record_to_dict` may produce. An ``extra=`` field with one of these names
#: goes into the nested ``"extra"`` object instead of overwriting the schema field.
_SCHEMA_KEYS: Final = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "message",
        "task",
        "coro",
        "thread",
        "process",
        "file",
        "line",
        "function",
        "callback",
        "exception",
        "stack",
        "context",
        "extra",
    }
)

#: Context variables that belong to the interpreter or to libraries, not to the application:
#: left out when ``contextvars=True``. Names starting with ``_`` are left out as well.
_CONTEXT_DENYLIST: Final = frozenset(
    {
        "decimal_context",  # decimal's per-context arithmetic settings
        "current_context",  # OpenTelemetry's context (its span is exported separately)
        "current_async_library_cvar",  # sniffio
    }
)

#: structlog's :func:`structlog.contextvars.bind_contextvars` stores ``key`` in a variable
#: named ``structlog_key`` and marks it unbound by setting it to ``...``.
_STRUCTLOG_PREFIX: Final = "structlog_"

#: Exact types both JSON backends encode identically, with nothing to check.
_JSON_SCALARS: Final = frozenset({str, int, bool, type(None)})

_MAX_DEPTH: Final = 64
_MAX_INT_BITS: Final = 14_000  # below the 4,300-digit limit of int -> str conversion


# ---------------------------------------------------------------------------- small parts


_utc_second: tuple[int, str] = (-1, "")


def _rfc3339(created: float) -> str:
    """``created`` as ``2026-11-24T21:25:22.123456Z``; the per-second prefix is cached."""
    global _utc_second
    micros = round(created * 1_000_000)
    seconds = micros // 1_000_000
    cached = _utc_second  # one tuple, read and replaced atomically: safe across threads
    if cached[0] != seconds:
        t = time.gmtime(seconds)
        cached = (
            seconds,
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.",
        )
        _utc_second = cached
    return f"{cached[1]}{str(micros % 1_000_000).zfill(6)}Z"  # zfill: faster than :06d


def _message(record: logging.LogRecord) -> str:
    """The rendered message: the listener's ``record.message`` if set, else rendered now.

    A plain dict as ``msg`` is a structlog event dict (structlog's stdlib integration
    logs it so): its message is the event. (aiolog's handler turns those into an
    :class:`aiolog.structlog.EventDict`, whose ``str()`` is the event already.)
    """
    msg = record.msg
    if msg.__class__ is dict:
        return _safe_str(msg.get("event"))
    message = record.__dict__.get("message")
    if message.__class__ is str:
        return message
    return get_message(record)


#: Keys of a structlog event dict that are not fields: the message, and what the record
#: carries in its own attributes (the exception, the stack, ``%`` arguments).
_EVENT_SPECIAL: Final = frozenset({"event", "exc_info", "stack_info", "positional_args"})


def _structlog_fields(record: logging.LogRecord, bound: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The fields structlog would render: the event dict's keys, then the bound variables.

    The event dict is the record's ``msg`` when structlog logged it (see
    :class:`aiolog.structlog`); ``bound`` holds the variables bound with
    :func:`structlog.contextvars.bind_contextvars`, whose values structlog's
    ``merge_contextvars`` would add unless the event has the key already.
    """
    msg = record.msg
    if msg.__class__ is str or not isinstance(msg, dict):
        return list(bound.items())
    fields = [(key, value) for key, value in msg.items() if key not in _EVENT_SPECIAL]
    fields.extend((key, value) for key, value in bound.items() if key not in msg)
    return fields


_extra_keys_by_shape: dict[tuple[str, ...], tuple[str, ...]] = {}


def _extra_keys(record: logging.LogRecord) -> tuple[str, ...]:
    """The names of the record's ``extra=`` fields, in order (as :func:`extra_items` says).

    :func:`extra_items` decides by name alone, so its answer is cached per tuple of
    attribute names: records from the same call site share one, and hashing that tuple
    costs less than filtering every attribute again.
    """
    known: tuple[str, ...] | None = getattr(record, "aiolog_extras", None)
    if known is not None:  # the listener's copy knows
        return known
    shape = tuple(record.__dict__)
    keys = _extra_keys_by_shape.get(shape)
    if keys is None:
        keys = tuple([key for key, _ in extra_items(record)])
        if len(_extra_keys_by_shape) >= 512:  # unbounded variety of extras: stay small
            _extra_keys_by_shape.clear()
        _extra_keys_by_shape[shape] = keys
    return keys


def _type_name(cls: object) -> str:
    """``module.QualName`` of an exception type; builtins stay unqualified."""
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", None)
    if not isinstance(qualname, str):
        return safe_repr(cls)
    module = getattr(cls, "__module__", None)
    if not isinstance(module, str) or module == "builtins":
        return qualname
    return f"{module}.{qualname}"


def _exception(record: logging.LogRecord) -> dict[str, str | None] | None:
    """``{"type", "message", "traceback"}`` for the record's exception, or ``None``.

    The traceback is the listener's pre-rendered ``record.exc_text`` when there is one,
    else rendered here from ``record.exc_info``. ``exc_info`` of ``(None, None, None)``
    (``logger.exception()`` outside an ``except`` block) means no exception. A record
    that crossed a process boundary keeps ``exc_text`` but not ``exc_info``: its type and
    message are then ``None``.
    """
    exc_info: object = record.exc_info
    text = record.exc_text or None
    cls: object = None
    value: object = None
    tb: object = None
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        cls, value, tb = exc_info
    elif isinstance(exc_info, BaseException):  # a record built without Logger._log
        cls, value, tb = type(exc_info), exc_info, exc_info.__traceback__
    if isinstance(value, BaseException):
        cls = type(value)
    elif cls is not None and not isinstance(cls, type):
        cls = None
    if cls is None and text is None:
        return None
    type_name = None if cls is None else _type_name(cls)
    message = _safe_str(value) if isinstance(value, BaseException) else None
    if text is None:
        text = _render_traceback(value, tb, type_name)
    return {"type": type_name, "message": message, "traceback": text}


def _render_traceback(value: object, tb: object, type_name: str | None) -> str:
    """The text of ``traceback.format_exception``, without its final newline."""
    if not isinstance(value, BaseException):
        return type_name or ""
    try:
        tb = tb if isinstance(tb, types.TracebackType) else None
        return "".join(traceback.format_exception(type(value), value, tb)).rstrip("\n")
    except Exception as exc:  # a broken __cause__, __notes__ or code object
        return f"{type_name}: {_safe_str(value)}\n<aiolog: traceback not rendered: {exc!r}>"


def _context_selector(option: _ContextVarsOption) -> bool | frozenset[str]:
    """Normalise the ``contextvars=`` option: ``True``, ``False`` or a set of names."""
    if option is True or option is False:
        return option
    if isinstance(option, str):  # one name, not its characters
        return frozenset({option})
    return frozenset(option)


_variables: dict[object, tuple[str, bool, bool]] = {}


def _variable(var: object) -> tuple[str, bool, bool]:
    """``(name, public, from_structlog)`` for a context variable; cached per variable.

    ``name`` is what the output shows: structlog's ``structlog_`` prefix is dropped.
    ``public`` says whether ``contextvars=True`` includes it.
    """
    info = _variables.get(var)
    if info is None:
        name = var.name if isinstance(var, ContextVar) else _safe_str(var)
        from_structlog = name.startswith(_STRUCTLOG_PREFIX)
        if from_structlog:
            name = name[len(_STRUCTLOG_PREFIX) :]
        info = (name, not name.startswith("_") and name not in _CONTEXT_DENYLIST, from_structlog)
        if len(_variables) >= 1024:  # variables made on the fly: keep the cache small
            _variables.clear()
        _variables[var] = info
    return info


def _context(
    context: object, select: bool | frozenset[str], json_ready: bool = False
) -> dict[str, Any]:
    """The selected variables of a :class:`contextvars.Context`, sorted by name.

    ``select`` is what :func:`_context_selector` returns; ``False`` selects nothing. The
    order of a context's variables depends on their hashes, so they are sorted to make
    lines comparable from one run to the next. With ``json_ready`` the values are
    normalised for JSON (see :func:`_normalize`).
    """
    variables, bound = _context_parts(context, select, json_ready)
    return {**variables, **bound} if bound else variables


def _context_parts(
    context: object, select: bool | frozenset[str], json_ready: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`_context`, split: ``(other variables, variables bound by structlog)``."""
    if select is False:
        return {}, {}
    names = select if isinstance(select, frozenset) else None
    pairs: list[tuple[str, Any]] | None = None
    bound: list[tuple[str, Any]] | None = None
    for var, value in context.items():  # type: ignore[attr-defined]
        name, public, from_structlog = _variables.get(var) or _variable(var)
        if not (public if names is None else name in names):
            continue  # aiolog's own task reference, in every task's context, ends here
        if from_structlog and value is Ellipsis:  # unbound by structlog.contextvars
            continue
        if json_ready and value.__class__ not in _JSON_SCALARS:
            value = _normalize(value)
        if from_structlog:
            if bound is None:
                bound = []
            bound.append((name, value))
        else:
            if pairs is None:
                pairs = []
            pairs.append((name, value))
    if pairs is None:
        variables: dict[str, Any] = {}
    else:
        if len(pairs) > 1:
            pairs.sort(key=itemgetter(0))
        variables = dict(pairs)
    if bound is None:
        return variables, {}
    if len(bound) > 1:
        bound.sort(key=itemgetter(0))
    return variables, dict(bound)


# ---------------------------------------------------------------------------- the structure


def _build(
    record: logging.LogRecord,
    select: bool | frozenset[str],
    location: bool,
    static: Mapping[str, Any],
    reserved: frozenset[str],
    json_ready: bool,
) -> dict[str, Any]:
    """The structured form of ``record``; see the module docstring for the schema.

    With ``json_ready`` the arbitrary values (``extra=`` fields, context variables) are
    normalised for JSON on the way (see :func:`_normalize`); ``static`` must already be.
    """
    attributes = record.__dict__
    msg = record.msg
    if msg.__class__ is str and attributes.get("message").__class__ is str:
        message: str = attributes["message"]  # _message(), inlined for the usual case
    else:
        message = _message(record)
    out: dict[str, Any] = {
        "timestamp": _rfc3339(record.created),
        "level": _get_level_name(record.levelno).lower(),
        "logger": record.name,
        "message": message,
        "task": attributes.get("taskName"),
        "coro": attributes.get("aiolog_coro"),
        "thread": record.threadName,
        "process": record.process,
    }
    if location:
        out["file"] = record.pathname
        out["line"] = record.lineno
        out["function"] = record.funcName
    callback = attributes.get("aiolog_callback")
    if callback is not None:
        out["callback"] = callback
    if record.exc_info or record.exc_text:
        exception = _exception(record)
        if exception is not None:
            out["exception"] = exception
    if record.stack_info:
        out["stack"] = record.stack_info
    bound: dict[str, Any] = {}
    if select is not False:
        context = getattr(record, "aiolog_context", None)
        if context is not None:
            variables, bound = _context_parts(context, select, json_ready)
            if variables:
                out["context"] = variables
    if static:
        out.update(static)
    nested: dict[str, Any] | None = None
    if bound or msg.__class__ is not str:
        for key, value in _structlog_fields(record, bound):
            if json_ready and value.__class__ not in _JSON_SCALARS:
                value = _normalize(value)
            if key in reserved:
                if out.get(key) != value:  # e.g. structlog's own "level": the same, dropped
                    if nested is None:
                        nested = {}
                    nested[key] = value
            else:
                out[key] = value
    for key in _extra_keys(record):
        value = attributes[key]
        if json_ready and value.__class__ not in _JSON_SCALARS:
            value = _normalize(value)
        if key in reserved:
            if nested is None:
                nested = {}
            nested[key] = value
        else:
            out[key] = value
    if nested is not None:
        out["extra"] = nested
    return out


def record_to_dict(
    record: logging.LogRecord,
    *,
    contextvars: _ContextVarsOption = True,
    location: bool = False,
) -> dict[str, Any]:
    """Return the canonical structured form of ``record`` (schema in the module docstring).

    Values are the record's own objects, not copies and not converted for JSON: this is
    the form for sinks that keep types (OTLP attributes, structlog); use :func:`dumps` or
    :class:`JSONFormatter` for text. The record is not modified.

    :param contextvars: which variables of the emit-time :mod:`contextvars` snapshot go
        into ``"context"``: ``True`` for all but private (``_name``) and interpreter or
        library ones (``decimal_context``, ...); ``False`` for none; or a collection of
        names for exactly those. Variables bound with
        :func:`structlog.contextvars.bind_contextvars` are fields at top level, under
        their structlog key, as structlog would render them; so are the keys of a
        structlog event dict logged as ``msg`` (the message is its ``"event"``).
    :param location: add ``file``, ``line`` and ``function`` (where the call was made).

    .. versionadded:: 0.1.0
    """
    return _build(
        record, _context_selector(contextvars), location, {}, _SCHEMA_KEYS, json_ready=False
    )


# ---------------------------------------------------------------------------- JSON


def _nonfinite(value: float) -> str | float:
    """NaN and infinities as the strings JSON has no literal for; finite floats unchanged."""
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return value


def _normalize(
    value: Any, strict: bool = False, depth: int = 0, active: set[int] | None = None
) -> Any:
    """Return ``value`` made of types both JSON backends encode the same way.

    Plain ``str``/``int``/``bool``/``None``/finite ``float``/``dict``/``list``/``tuple``
    pass through and containers are only copied when something inside them changes, so
    the common case allocates nothing. Non-finite floats become ``"NaN"``/``"Infinity"``;
    enums their value; ``datetime``/``date``/``time`` ISO 8601; UUIDs their string;
    subclasses of the JSON types plain copies; anything else its ``repr()``. Cycles become
    ``"{...}"``/``"[...]"`` (like ``repr``) and nesting beyond 64 levels a ``repr``.

    ``strict`` also makes every dict key a ``str`` and every ``int`` printable, for the
    stdlib fallback that must not fail.
    """
    cls = value.__class__
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if strict and value.bit_length() > _MAX_INT_BITS:
            return _big_int(value)
        return value
    if cls is float:
        return value if value - value == 0.0 else _nonfinite(value)
    if cls is dict or cls is list or cls is tuple:
        return _container(value, id(value), strict, depth, active)
    return _convert(value, strict, depth, active)


def _big_int(value: int) -> int | str:
    """An int too long for ``int -> str`` conversion under the interpreter's limit: repr."""
    try:
        str(value)
    except ValueError:
        return safe_repr(value)
    return value


def _container(
    value: dict[Any, Any] | list[Any] | tuple[Any, ...],
    ident: int,
    strict: bool,
    depth: int,
    active: set[int] | None,
) -> Any:
    """Normalise the items of a plain dict, list or tuple (see :func:`_normalize`)."""
    if active is None:
        active = set()
    elif ident in active:
        return "{...}" if isinstance(value, dict) else "[...]"
    if depth >= _MAX_DEPTH:
        return safe_repr(value)
    active.add(ident)
    try:
        depth += 1
        if isinstance(value, dict):
            if strict:
                return {
                    _json_key(key): _normalize(item, True, depth, active)
                    for key, item in value.items()
                }
            changed: dict[Any, Any] | None = None
            for key, item in value.items():
                new = _normalize(item, False, depth, active)
                if new is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
            return value if changed is None else changed
        items: list[Any] | None = None
        for index, item in enumerate(value):
            new = _normalize(item, strict, depth, active)
            if new is not item:
                if items is None:
                    items = list(value)
                items[index] = new
        return value if items is None else items
    finally:
        active.discard(ident)


def _json_key(key: object) -> str:
    """A dict key as JSON (and ``orjson.OPT_NON_STR_KEYS``) writes it: always a str."""
    if key.__class__ is str:
        return key
    if key is None:
        return "null"
    if key is True:
        return "true"
    if key is False:
        return "false"
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, float):
        return repr(float(key))
    if isinstance(key, int) and key.bit_length() <= _MAX_INT_BITS:
        return str(int(key))
    return _safe_str(key)


def _convert(value: Any, strict: bool, depth: int, active: set[int] | None) -> Any:
    """Normalise a value that is not of an exact JSON type (see :func:`_normalize`)."""
    try:
        if isinstance(value, enum.Enum):
            if depth >= _MAX_DEPTH:
                return safe_repr(value)
            return _normalize(value.value, strict, depth + 1, active)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return _normalize(int.__index__(value), strict, depth, active)
        if isinstance(value, float):
            return _normalize(float.__float__(value), strict, depth, active)
        if isinstance(value, dict):
            return _container(dict(value), id(value), strict, depth, active)
        if isinstance(value, (list, tuple)):
            return _container(list(value), id(value), strict, depth, active)
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
    except Exception:
        pass
    return safe_repr(value)


def _default(value: Any) -> Any:
    """Encoder hook for anything a record field holds that JSON does not know."""
    return _convert(value, False, 0, None)


_stdlib_encoder: Final = json.JSONEncoder(
    ensure_ascii=False,
    check_circular=False,  # values are normalised first: no cycles reach the encoder
    allow_nan=False,  # a non-finite float that got through means: take the strict path
    separators=(",", ":"),
    default=_default,
)
_ascii_encoder: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_default
)


def _encode(obj: Any) -> str:
    """Encode already-normalised ``obj`` as one JSON line; falls back rather than raise."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, default=_default, option=_orjson.OPT_NON_STR_KEYS).decode()
        except Exception:  # lone surrogates, ints beyond 64 bits, exotic dict keys
            return _encode_strict(obj)
    try:
        text = _stdlib_encoder.encode(obj)
    except Exception:  # exotic dict keys, ints too long to print, deep nesting
        return _encode_strict(obj)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape it as \udXXX
            return _encode_strict(obj)
    return text


def _encode_line(obj: Any) -> bytes:
    """:func:`_encode` plus a newline, as UTF-8: with orjson, straight to bytes."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, default=_default, option=_LINE_OPTIONS)
        except Exception:  # the same fallbacks as _encode
            return f"{_encode_strict(obj)}\n".encode()
    return f"{_encode(obj)}\n".encode()


def _encode_strict(obj: Any) -> str:
    """The slow path that cannot fail: str keys only, ASCII output, surrogates escaped."""
    try:
        return _ascii_encoder.encode(_normalize(obj, strict=True))
    except Exception as exc:
        return _ascii_encoder.encode({"aiolog_error": f"unencodable value: {exc!r}"})


def dumps(obj: Any) -> str:
    """Encode ``obj`` as one line of JSON (no trailing newline); never raises.

    Uses :mod:`orjson` when it is installed and :mod:`json` otherwise, with the same
    output for the same input: compact separators, non-ASCII characters kept as they are,
    keys in insertion order. What JSON cannot express is converted rather than refused:

    * non-finite floats become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
    * dict keys that are not strings are stringified (``1`` -> ``"1"``, ``None`` ->
      ``"null"``, other objects their ``str``);
    * lone surrogates are escaped (``"\\ud800"``), so the line is always valid UTF-8 (such a
      line is written by the stdlib encoder with every non-ASCII character escaped);
    * enums become their value, dates and times ISO 8601, UUIDs their string;
    * any other object becomes its ``repr()`` (a placeholder if ``__repr__`` fails), and
      cyclic references ``"{...}"`` or ``"[...]"``.

    .. versionadded:: 0.1.0
    """
    try:
        return _encode(_normalize(obj))
    except Exception:  # e.g. a dict resized by another thread while we walked it
        return _encode_strict(safe_repr(obj))


# ---------------------------------------------------------------------------- formatters


def _fallback(record: logging.LogRecord, error: BaseException) -> dict[str, Any]:
    """The fields a formatter can still report when formatting ``record`` failed."""

    def attempt(compute: Callable[[], Any], default: object) -> Any:
        try:
            return compute()
        except Exception:
            return safe_repr(default)

    return {
        "timestamp": attempt(lambda: _rfc3339(record.created), getattr(record, "created", None)),
        "level": attempt(
            lambda: logging.getLevelName(record.levelno).lower(), getattr(record, "levelno", None)
        ),
        "logger": attempt(lambda: _safe_str(record.name), getattr(record, "name", None)),
        "message": attempt(lambda: _message(record), getattr(record, "msg", None)),
        "aiolog_error": f"record not fully formatted: {type(error).__name__}: {_safe_str(error)}",
    }


def _static_fields(fields: Mapping[str, Any] | None, taken: frozenset[str]) -> dict[str, Any]:
    """Validate ``static_fields`` and convert their values for JSON, once, at configuration."""
    static = dict(fields or {})
    for key in static:
        if not isinstance(key, str):
            raise TypeError(f"static_fields keys must be str, not {key!r}")
        if key in taken:
            raise ValueError(f"static field {key!r} would overwrite a built-in field")
    return {key: _normalize(value) for key, value in static.items()}


class _StructuredFormatter(logging.Formatter):
    """What the formatters share: the stdlib constructor, the context and location options."""

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
        static_fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(fmt, datefmt, style, validate, defaults=defaults)
        self.contextvars = _context_selector(contextvars)
        self.location = location
        self.static_fields = _static_fields(static_fields, self._builtin_keys)
        self._reserved = self._builtin_keys.union(self.static_fields)
        self._keys: dict[str, str] = {}  # field name -> its safe key (logfmt's cache)

    #: Names the format itself writes: static fields may not take them.
    _builtin_keys: frozenset[str] = frozenset()


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

    .. versionadded:: 0.1.0
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
            return _encode(self.to_dict(record))
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
            plain = _orjson is not None and type(self).to_dict is JSONFormatter.to_dict
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
        self.static = b"," + _orjson.dumps(static)[1:-1] if static else b""
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
        dumps = _orjson.dumps
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
        dumps = _orjson.dumps
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
        dumps = _orjson.dumps
        level = _get_level_name(record.levelno).lower()
        head = b'Z","level":' + dumps(level) + b',"logger":' + dumps(record.name) + b',"message":'
        self._store(self.heads, (record.levelno, record.levelname, record.name), head)
        return head

    def _tail(self, key: tuple[Any, Any, Any, Any]) -> bytes:
        dumps = _orjson.dumps
        task, coro, thread, process = key
        tail = b',"task":' + dumps(task) + b',"coro":' + dumps(coro)
        tail += b',"thread":' + dumps(thread) + b',"process":' + dumps(process)
        self._store(self.tails, key, tail)
        return tail

    def _store(self, cache: dict[Any, bytes], key: Any, value: bytes) -> None:
        if len(cache) >= self.LIMIT:
            cache.clear()
        cache[key] = value


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

    .. versionadded:: 0.1.0
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

    .. versionadded:: 0.1.0
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
        for key in _extra_keys(record):
            parts.append(f"{key}={_text_value(attributes[key])}")
        text = " ".join(parts)

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


# ---------------------------------------------------------------------------- by name

_FORMATTERS: Final[dict[str, type[logging.Formatter]]] = {
    "json": JSONFormatter,
    "logfmt": LogfmtFormatter,
    "text": TextFormatter,
}


def formatter_for(name: str, **options: Any) -> logging.Formatter:
    """Return a new formatter by name: ``"json"``, ``"logfmt"`` or ``"text"`` (any case).

    ``options`` go to the formatter's constructor (``formatter_for("text", colors=True)``).
    This is how sink URLs and :func:`aiolog.configure` spell formats.

    :raises ValueError: for any other name.

    .. versionadded:: 0.1.0
    """
    cls = _FORMATTERS.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(repr(known) for known in _FORMATTERS)
        raise ValueError(f"unknown log format {name!r}: expected one of {valid}")
    return cls(**options)
