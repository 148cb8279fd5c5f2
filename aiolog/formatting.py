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

import logging
from typing import Any, Final

from aiolog._encode import dumps
from aiolog._fields import record_to_dict
from aiolog._json import JSONFormatter
from aiolog._text import LogfmtFormatter, TextFormatter

__all__ = [
    "JSONFormatter",
    "LogfmtFormatter",
    "TextFormatter",
    "dumps",
    "formatter_for",
    "record_to_dict",
]


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
    """
    cls = _FORMATTERS.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(repr(known) for known in _FORMATTERS)
        raise ValueError(f"unknown log format {name!r}: expected one of {valid}")
    return cls(**options)
