"""One grammar for every setting: bools, sizes, durations, counts, levels, choices, ports.

Every setting aiolog takes, whether a :func:`aiolog.configure` keyword, a sink URL's query
option, an ``AIOLOG_*`` environment variable, a dictConfig key or a constructor argument,
is read by one parser here, so that a value means the same thing wherever it is written
and a mistake is reported in one wording::

    <where>: bad <setting>=<value!r>: expected <what is accepted>
    <where>: unknown option <name!r>: expected one of <the known options>

``<where>`` says how the user wrote the setting: ``configure()``, a sink URL
(``sink 'file:app.log?rotate=lots'``), the environment (``environment``, with the
variable as the setting: ``bad AIOLOG_LEVEL='LOUD'``), a dictConfig handler
(``dictConfig handler 'queue'``) or a constructor (``FileSink()``, ``RecordQueue()``).
The error is :class:`OptionError`, a :class:`ValueError`; the values of secret-looking
settings (``token``, ``key``, ``headers``...) are shown as ``'***'``.

The grammar (strings are stripped; words are case-insensitive):

* **bool**: ``True``/``False``, ``1``/``0``, or ``true``/``false``, ``yes``/``no``,
  ``on``/``off``, ``1``/``0`` as text.
* **size** in bytes: an integer, or a number with a unit ``B``, ``K``/``KB``/``KiB``,
  ``M``/``MB``/``MiB``, ``G``/``GB``/``GiB``. Units are binary whatever their spelling
  (``10MB`` = 10 MiB = 10 485 760 bytes, as in logrotate); decimals are allowed
  (``1.5MiB``), the result is rounded down to whole bytes.
* **duration** in seconds: a number, or a number with ``ms``, ``s``, ``m`` or ``h``
  (``500ms``, ``2s``, ``1m``). Never negative, NaN or infinite.
* **count**: an integer (or its digits as text) within the setting's bounds.
* **level**: a registered level name in any case (``info``, ``WARNING``) or an integer >= 0.
* **choice**: one of the setting's words, any case.
* **port**: an integer 1-65535.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import urllib.parse
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, Final, NoReturn, TypeVar

from aiolog._urls import is_secret, redact_url

__all__ = [
    "FORMATS",
    "UNKNOWN",
    "OptionError",
    "boolean",
    "check_known",
    "choice",
    "count",
    "duration",
    "endpoint",
    "fail",
    "level",
    "located",
    "log_format",
    "merged",
    "pairs",
    "port",
    "query",
    "size",
    "url_where",
]

_T = TypeVar("_T", bound=str)

#: The ``format=`` of every sink and of :func:`aiolog.configure`.
FORMATS: Final = ("json", "logfmt", "text")

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
BOOL_EXPECTED: Final = "true or false (also 1/0, yes/no, on/off)"

_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmg])(?:i?b)?|b)?", re.IGNORECASE)
SIZE_EXPECTED: Final = "a size in bytes, or with a unit K, M or G (binary: '10MB' = 10 MiB)"

_SECONDS: Final = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?", re.IGNORECASE)
DURATION_EXPECTED: Final = "a duration in seconds (a number, or with ms, s, m or h: '500ms', '2s')"


class OptionError(ValueError):
    """A setting with a bad value, or an unknown one; raised at configure time.

    ``str()`` is ``"<where>: bad <setting>=<value!r>: expected <expected>"`` (or
    ``"<where>: unknown option <setting!r>: expected one of ..."``, when ``value`` is
    :data:`UNKNOWN`). The parts are attributes, so callers can restate where the setting
    came from (:meth:`at`).
    """

    def __init__(self, where: str, setting: str, value: object, expected: str) -> None:
        self.where = where
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(self._text())

    def _text(self) -> str:
        if self.value is UNKNOWN:
            return f"{self.where}: unknown option {self.setting!r}: expected {self.expected}"
        shown = "'***'" if is_secret(self.setting) else repr(self.value)
        return f"{self.where}: bad {self.setting}={shown}: expected {self.expected}"

    def at(self, where: str) -> OptionError:
        """The same error, said of the setting as written at ``where``."""
        return OptionError(where, self.setting, self.value, self.expected)

    def __reduce__(self) -> Any:
        return (OptionError, (self.where, self.setting, self.value, self.expected))


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown option>"


#: The ``value`` of an :class:`OptionError` about an option that does not exist.
UNKNOWN: Final[Any] = _Unknown()


def fail(where: str, setting: str, value: object, expected: str) -> NoReturn:
    """Raise :class:`OptionError`."""
    raise OptionError(where, setting, value, expected)


@contextlib.contextmanager
def located(where: str) -> Iterator[None]:
    """Restate every :class:`OptionError` raised in the block as said at ``where``."""
    try:
        yield
    except OptionError as exc:
        raise exc.at(where) from None


def url_where(url: str) -> str:
    """The ``<where>`` of a sink URL: ``sink 'URL'``, with secrets redacted."""
    keys = [key for key, _ in urllib.parse.parse_qsl(url.partition("?")[2], True)]
    if "@" in url or any(is_secret(key) for key in keys):
        url = redact_url(url)
    return f"sink {url!r}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


# ---------------------------------------------------------------------------- the kinds


def boolean(where: str, setting: str, value: object) -> bool:
    """Read a bool: ``True``/``False``, ``1``/``0``, or a spelling of one (see module doc)."""
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    fail(where, setting, value, BOOL_EXPECTED)


def size(where: str, setting: str, value: object, *, low: int = 1, high: int | None = None) -> int:
    """Read a size in bytes, ``low <= size <= high``: an int or ``"64KB"``, ``"1.5MiB"``."""
    result: int | None = None
    if _is_int(value):
        result = value  # type: ignore[assignment]
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value.strip())):
        result = int(float(match[1]) * _UNITS[(match[2] or "").lower()])
    if result is None or result < low or (high is not None and result > high):
        fail(where, setting, value, f"{SIZE_EXPECTED},{_bound_text(low, high)}")
    return result


def duration(
    where: str,
    setting: str,
    value: object,
    *,
    positive: bool = False,
    high: float | None = None,
) -> float:
    """Read seconds: a number or ``"500ms"``, ``"2s"``, ``"1m"``; > 0 if ``positive``, else >= 0."""
    seconds = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value.strip())):
        seconds = float(match[1]) * _SECONDS[(match[2] or "").lower()]
    bad = not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0)
    if bad or (high is not None and seconds > high):
        bound = "> 0" if positive else ">= 0"
        if high is not None:
            bound += f" and <= {high:g}"
        fail(where, setting, value, f"{DURATION_EXPECTED}, {bound}")
    return seconds


def count(where: str, setting: str, value: object, *, low: int = 1, high: int | None = None) -> int:
    """Read an integer ``low <= n <= high``: an int, or its digits as text."""
    result: int | None = None
    if _is_int(value):
        result = value  # type: ignore[assignment]
    elif isinstance(value, str) and value.strip().isdigit():
        result = int(value.strip())
    if result is None or result < low or (high is not None and result > high):
        fail(where, setting, value, f"an integer{_bound_text(low, high)}")
    return result


def _level_names() -> list[str]:
    by_value: Mapping[int, str] = logging._levelToName
    return [by_value[number] for number in sorted(by_value, reverse=True)]


def level(where: str, setting: str, value: object) -> int:
    """Read a level: a registered name in any case (``"info"``) or an integer >= 0."""
    if _is_int(value) and value >= 0:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        word = value.strip().upper()
        if word.isdigit():
            return int(word)
        registered: Mapping[str, int] = logging._nameToLevel
        for name, number in registered.items():
            if name.upper() == word:
                return number
    names = ", ".join(_level_names())
    fail(where, setting, value, f"a level name ({names}; any case) or an integer >= 0")


def choice(where: str, setting: str, value: object, choices: Iterable[_T]) -> _T:
    """Read one of ``choices`` (case-insensitive); return it as ``choices`` spell it."""
    options = list(choices)
    if isinstance(value, str):
        word = value.strip().lower()
        for option in options:
            if option.lower() == word:
                return option
    fail(where, setting, value, f"one of {', '.join(options)}")


def log_format(where: str, value: object, setting: str = "format") -> str | None:
    """Read a ``format=``: ``json``, ``logfmt`` or ``text``; ``None`` stays ``None``."""
    return None if value is None else choice(where, setting, value, FORMATS)


def port(where: str, setting: str, value: object) -> int:
    """Read a TCP/UDP port, 1-65535."""
    return count(where, setting, value, low=1, high=65535)


def endpoint(where: str, url: str, default_port: int | None) -> tuple[str, int]:
    """Read ``(host, port)`` of a ``scheme://host[:port]`` URL.

    IPv6 literals are written in brackets (``[::1]:514``) and returned without them. No
    port in the URL gives ``default_port``; with ``None`` a port is required.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        fail(where, "host", url, "scheme://host:port")
    host = parts.hostname
    if not host:
        fail(where, "host", "", "scheme://host:port (the URL names no host)")
    hostport = parts.netloc.rpartition("@")[2]
    raw = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    raw = raw.partition(":")[2] if ":" in raw else ""
    if not raw:
        if default_port is None:
            fail(where, "port", "", "a port in the URL, 1-65535 (scheme://host:port)")
        return host, default_port
    return host, port(where, "port", raw)


def pairs(where: str, setting: str, text: object) -> dict[str, str]:
    """Read ``k1=v1,k2=v2`` (the ``OTEL_EXPORTER_OTLP_HEADERS`` form, percent-encoded)."""
    if not isinstance(text, str):
        fail(where, setting, text, _PAIRS_EXPECTED)
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = urllib.parse.unquote(name).strip()
        if not sep or not name:
            fail(where, setting, text, _PAIRS_EXPECTED)
        result[name] = urllib.parse.unquote(value).strip()
    return result


_PAIRS_EXPECTED: Final = "name=value pairs separated by commas (percent-encoded)"


def query(where: str, url: str, known: Collection[str]) -> dict[str, str]:
    """Read the query of ``url``: its options as a dict, each known and given once.

    A name ending in ``.`` in ``known`` (``"header."``) admits every option with that
    prefix. A repeated option is a :class:`OptionError` too.
    """
    try:
        pairs = urllib.parse.parse_qsl(
            urllib.parse.urlsplit(url).query, keep_blank_values=True, strict_parsing=False
        )
    except ValueError:
        pairs = []
    options: dict[str, str] = {}
    for key, value in pairs:
        check_known(where, [key], known)
        if key in options:
            fail(where, key, value, f"each option once ({key} is given twice)")
        options[key] = value
    return options


def check_known(where: str, names: Iterable[str], known: Collection[str]) -> None:
    """Raise :class:`OptionError` for the first of ``names`` that is not in ``known``."""
    prefixes = tuple(name for name in known if name.endswith("."))
    for name in names:
        if name not in known and not (prefixes and name.startswith(prefixes)):
            listed = ", ".join(sorted(f"{k}NAME" if k.endswith(".") else k for k in known))
            raise OptionError(where, name, UNKNOWN, f"one of {listed}")


def merged(
    where: str, url: str, options: Mapping[str, Any], known: Collection[str]
) -> dict[str, Any]:
    """The URL's query merged with keyword ``options`` (which win); unknown ones raise."""
    result: dict[str, Any] = dict(query(where, url, known))
    check_known(where, options, known)
    result.update(options)
    return result
