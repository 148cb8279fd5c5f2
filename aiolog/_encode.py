"""Encode values as JSON the same way with :mod:`orjson` or :mod:`json`, never raising.

:func:`dumps` is public (re-exported by :mod:`aiolog.formatting`); :func:`_normalize` is the
walk that turns arbitrary values (``extra=`` fields, context variables) into the types
both backends encode identically, so that a line does not depend on which one is
installed. :mod:`aiolog._fields` uses it while it builds a record's fields,
:mod:`aiolog._json` to write lines.
"""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from typing import Any, Final

from aiolog._record import safe_repr
from aiolog._record import safe_str as _safe_str

try:
    import orjson as _orjson_module
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    _orjson_module = None  # type: ignore[assignment,unused-ignore]

#: orjson, or ``None`` without it: the one switch between the two backends, read at each
#: call (:mod:`aiolog._json` reads it here too, so that tests can turn orjson off).
_orjson = _orjson_module

_LINE_OPTIONS = 0 if _orjson is None else _orjson.OPT_NON_STR_KEYS | _orjson.OPT_APPEND_NEWLINE
_NON_STR = 0 if _orjson is None else _orjson.OPT_NON_STR_KEYS

__all__ = ["dumps"]

#: Exact types both JSON backends encode identically, with nothing to check.
_JSON_SCALARS: Final = frozenset({str, int, bool, type(None)})

_MAX_DEPTH: Final = 64
_MAX_INT_BITS: Final = 14_000  # below the 4,300-digit limit of int -> str conversion


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
    """
    try:
        return _encode(_normalize(obj))
    except Exception:  # e.g. a dict resized by another thread while we walked it
        return _encode_strict(safe_repr(obj))
