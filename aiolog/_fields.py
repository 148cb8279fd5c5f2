"""A log record's structured form: the fields every formatter renders.

:func:`record_to_dict` (public, re-exported by :mod:`aiolog.formatting`, whose docstring
lists the schema) and :func:`_build`, which the formatters call with their options; the
pieces they are made of (the cached RFC 3339 timestamp, the message, the exception as
``{type, message, traceback}``, the selected context variables, structlog's fields, the
``extra=`` fields), and :class:`_StructuredFormatter`, the base the JSON, logfmt and text
formatters share. Nothing here mutates the record: several sinks read the same one.
"""

from __future__ import annotations

import logging
import time
import traceback
import types
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from operator import itemgetter
from typing import Any, Final, Literal

from aiolog._encode import _JSON_SCALARS, _normalize
from aiolog._record import extra_items, get_message, safe_repr
from aiolog._record import safe_str as _safe_str

_get_level_name = logging.getLevelName

__all__ = ["record_to_dict"]

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
    """
    return _build(
        record, _context_selector(contextvars), location, {}, _SCHEMA_KEYS, json_ready=False
    )


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
