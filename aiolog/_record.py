"""What aiolog adds to a :class:`logging.LogRecord`, and how to read it safely.

The listener works on its own *copy* of each record, which carries these attributes
besides the stdlib's; the formatters and sinks read them. They are the whole contract
between the caller side and the listener side:

``taskName``
    Name of the asyncio task that logged (``None`` outside a task). Python 3.12+ sets it
    itself; aiolog backfills it on 3.10/3.11.
``aiolog_coro``
    ``__qualname__`` of that task's coroutine, or ``None``.
``aiolog_callback``
    Qualified name of the loop callback (``call_soon``/``call_later``/...) that logged
    outside any task, or ``None``.
``aiolog_context``
    A :class:`contextvars.Context` snapshot taken at emit time, or ``None``.

On the way through a :class:`aiolog.RecordQueue` the emit path does not copy the record:
it queues a tuple ``(record, task name, task, callback name, context)``, and the queue's
consumer side turns it into the copy (:func:`unpack`), on the listener's thread, with all
four attributes set. Everything that takes records out of a ``RecordQueue`` gets records.
The handler's other path (:meth:`aiolog.QueueHandler.prepare`, for records whose message
must be frozen at once and for queues of other types) copies on the caller's thread.

``msg``/``args`` stay deferred only when every argument is an immutable scalar (see
:data:`IMMUTABLE_TYPES`); otherwise the handler freezes the message at emit time and sets
``args`` to ``None``. Formatting in the listener therefore never reads state that the
application may have changed since.
"""

from __future__ import annotations

import contextvars
import datetime
import decimal
import fractions
import logging
import pathlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = [
    "IMMUTABLE_TYPES",
    "RESERVED_ATTRS",
    "QueuedRecord",
    "extra_items",
    "get_message",
    "safe_repr",
    "safe_str",
    "task_coro_name",
    "unpack",
]

#: Exact types whose ``str()``/``repr()``/``%d`` cannot change after the record is made and
#: that run no user code when formatted, so ``msg % args`` may safely wait for the listener.
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        decimal.Decimal,
        fractions.Fraction,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
        uuid.UUID,
        pathlib.PurePosixPath,
        pathlib.PosixPath,
        pathlib.PureWindowsPath,
    }
)

_STDLIB_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

#: Attributes of a record that are not user ``extra=`` fields.
RESERVED_ATTRS: frozenset[str] = _STDLIB_ATTRS | {
    "aiolog_coro",
    "aiolog_callback",
    "aiolog_context",
}


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder naming the type when ``__repr__`` itself fails."""
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must never break logging
        cls = type(value)
        return f"<unrepresentable {cls.__module__}.{cls.__qualname__} object: {type(exc).__name__}>"


def safe_str(value: object) -> str:
    """``str(value)``, or its safe ``repr`` when ``__str__`` fails; never raises."""
    if value.__class__ is str:
        return value
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def get_message(record: logging.LogRecord) -> str:
    """Return ``record.getMessage()``, never raising.

    A record whose arguments do not fit its format (wrong count, wrong type) or whose
    objects fail in ``__str__`` still yields a readable message that shows the raw parts,
    so nothing is lost and the listener never dies on one bad record.
    """
    try:
        return record.getMessage()
    except Exception as exc:
        msg = safe_str(record.msg)
        reason = f"{type(exc).__name__}: {safe_str(exc)}"
        return f"{msg} [aiolog: could not format message: {reason}; args={safe_repr(record.args)}]"


def extra_items(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """Yield the ``extra=`` fields of a record (attributes logging itself does not set)."""
    for key, value in record.__dict__.items():
        # extra={1: ...} is legal: a key that is not a str is passed on as it is.
        if not isinstance(key, str) or (key not in RESERVED_ATTRS and not key.startswith("_")):
            yield key, value


_NEEDS_TASKNAME = sys.version_info < (3, 12)
_new_record = logging.LogRecord.__new__
_LogRecord = logging.LogRecord


def task_coro_name(task: Any) -> str | None:
    """The qualified name of an asyncio task's coroutine, or None."""
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)


class QueuedRecord(logging.LogRecord):
    """The listener's copy of a record, as :func:`unpack` makes it.

    A :class:`logging.LogRecord` in every way, except that ``aiolog_context`` lives in a
    slot rather than in ``__dict__``: a dict holding only plain data (strings, numbers,
    tuples of them) is dropped from the garbage collector's lists, and with thousands of
    records waiting in a sink buffer that makes collections several times cheaper. Read it
    as an attribute (``getattr(record, "aiolog_context", None)``), as the formatters do.
    """

    __slots__ = ("aiolog_context",)
    aiolog_context: contextvars.Context | None


def unpack(item: Any) -> Any:
    """The record a queued item stands for; items that are not packed pass through.

    A packed item is the tuple :meth:`aiolog.QueueHandler.emit` queues:
    ``(record, task name, task, callback name, contextvars snapshot)``. The result is a
    new :class:`QueuedRecord` with the record's attributes and the captured ones
    (``taskName``, ``aiolog_coro``, ``aiolog_callback``, ``aiolog_context``): the
    listener's private copy, which it may annotate freely. Copying a dict whose keys are
    all strings runs no Python code, so the copy is a consistent snapshot even while a
    handler on the caller's side is still formatting the original.
    """
    if item.__class__ is not tuple:
        return item
    record, task_name, task, callback, context = item
    d = record.__dict__.copy()
    if task is not None:
        if _NEEDS_TASKNAME or d.get("taskName") is None:
            d["taskName"] = task_name
        coro = task.get_coro()  # task_coro_name(), inlined: once per record
        d["aiolog_coro"] = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    else:
        if _NEEDS_TASKNAME:
            d["taskName"] = None
        d["aiolog_coro"] = None
    d["aiolog_callback"] = callback
    copy: QueuedRecord = _new_record(QueuedRecord)
    copy.__dict__ = d
    copy.aiolog_context = context
    return copy
