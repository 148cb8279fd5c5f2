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
import enum
import fractions
import logging
import pathlib
import pickle
import sys
import uuid
from collections.abc import Iterator, Mapping
from copy import copy as shallow_copy
from itertools import islice
from typing import Any

__all__ = [
    "IMMUTABLE_TYPES",
    "MUTABLE_CONTAINERS",
    "RECORD_FIELDS",
    "RESERVED_ATTRS",
    "CapturedRecord",
    "ContextName",
    "EventDict",
    "PreparedRecord",
    "QueuedRecord",
    "exc_tuple",
    "expose_context",
    "extra_items",
    "freeze_event",
    "freeze_in_place",
    "freeze_message",
    "get_message",
    "has_mutable_extras",
    "plain_context",
    "safe_repr",
    "safe_str",
    "snapshot_extras",
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
_exc_info = sys.exc_info
_getrefcount = sys.getrefcount
#: How many attributes a record made by a logger has before any ``extra=`` field.
RECORD_FIELDS = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)


def task_coro_name(task: Any) -> str | None:
    """The qualified name of an asyncio task's coroutine, or None."""
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)


class CapturedRecord(logging.LogRecord):
    """A :class:`logging.LogRecord` with two slots for what the listener attaches to it.

    ``aiolog_context`` (the emit-time :mod:`contextvars` snapshot) lives in a slot rather
    than in ``__dict__``: a dict holding only plain data (strings, numbers, tuples of them)
    is dropped from the garbage collector's lists, and with thousands of records waiting in
    a queue or a sink buffer that makes collections several times cheaper. Read it as an
    attribute (``getattr(record, "aiolog_context", None)``), as the formatters do.

    ``aiolog_extras`` is ``()`` when the record is known to carry no ``extra=`` fields
    (it had exactly the attributes a logger's record has), else ``None``: the formatters
    then look at its attributes. :class:`aiolog.FastLogRecord` and :class:`QueuedRecord`
    are such records; the slots are unset until :func:`unpack` sets them.
    """

    __slots__ = ("_aiolog_context", "aiolog_extras")
    _aiolog_context: contextvars.Context | None
    aiolog_extras: tuple[str, ...] | None

    @property
    def aiolog_context(self) -> contextvars.Context | None:
        """The emit-time :mod:`contextvars` snapshot, or None.

        From the slot when the listener set it, else from ``__dict__``: a record made by
        ``logging.makeLogRecord(other.__dict__)`` (as structlog's ``ProcessorFormatter``
        copies records) carries it there.
        """
        try:
            return self._aiolog_context
        except AttributeError:
            context: contextvars.Context | None = self.__dict__.get("aiolog_context")
            return context

    @aiolog_context.setter
    def aiolog_context(self, context: contextvars.Context | None) -> None:
        self._aiolog_context = context


def expose_context(record: logging.LogRecord) -> None:
    """Put a record's captured context in its ``__dict__`` too, for formatters that copy.

    A formatter that copies records with ``logging.makeLogRecord(record.__dict__)`` (as
    structlog's ``ProcessorFormatter`` does) would not carry over a slot; sinks call this
    before handing a record to a formatter they did not make.
    """
    if isinstance(record, CapturedRecord):
        d = record.__dict__
        if "aiolog_context" not in d:
            d["aiolog_context"] = record.aiolog_context


class QueuedRecord(CapturedRecord):
    """The listener's copy of a record made by another factory, as :func:`unpack` makes it.

    A :class:`logging.LogRecord` in every way, with :class:`CapturedRecord`'s slots.
    """

    __slots__ = ()


def unpack(item: Any) -> Any:
    """The record a queued item stands for; items that are not packed pass through.

    A packed item is the tuple :meth:`aiolog.QueueHandler.emit` queues:
    ``(record, task name, task, callback name, contextvars snapshot)``. The result is the
    listener's private record, which it may annotate freely, with the captured attributes
    set (``taskName``, ``aiolog_coro``, ``aiolog_callback``, ``aiolog_context``). When
    nothing else refers to the record any more (the usual case: the logger call that made
    it has returned, and no other handler kept it) and it has the slots
    (:class:`aiolog.FastLogRecord`), it is that record itself. Otherwise it is a new
    :class:`QueuedRecord` with a copy of its attributes: copying a dict whose keys are all
    strings runs no Python code, so the copy is a consistent snapshot even while a
    handler on the caller's side is still formatting the original.
    """
    if item.__class__ is not tuple:
        return item
    record, task_name, task, callback, context = item
    fields = len(record.__dict__)
    # The tuple, the local name and the call's argument: with no other reference, no one
    # else can see the record any more, and it becomes the listener's without a copy.
    owned = _getrefcount(record) == 3 and isinstance(record, CapturedRecord)
    d = record.__dict__ if owned else record.__dict__.copy()
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
    if owned:
        copy: CapturedRecord = record
    else:
        copy = _new_record(QueuedRecord)
        copy.__dict__ = d
    copy.aiolog_context = context
    # A logger's record has these attributes and its extra= fields (which may not replace
    # any of them): with no more, it has no extras.
    copy.aiolog_extras = () if fields == RECORD_FIELDS else None
    return copy


# -- records for queues that are not aiolog's own -------------------------------------


class ContextName(str):
    """A context variable's name, standing for the variable in :func:`plain_context`.

    It is a ``str`` (it pickles as one) with the ``name`` attribute of a
    :class:`contextvars.ContextVar`, so code reading ``var.name`` from a record's
    ``aiolog_context`` reads a resolved snapshot as it reads a live one.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """The variable's name."""
        return str(self)


_PLAIN_SCALARS = (str, int, float, bool, type(None), type(Ellipsis))


def plain_context(context: contextvars.Context | None) -> dict[ContextName, Any] | None:
    """A :mod:`contextvars` snapshot as plain, picklable data: name -> value.

    For queues that may cross a process boundary (a ``multiprocessing.Queue``): a
    :class:`contextvars.Context` cannot be pickled. Private variables (a name starting
    with ``_``, such as aiolog's own) are left out; a value that cannot be pickled is
    replaced by its ``repr()``.
    """
    if context is None:
        return None
    plain: dict[ContextName, Any] = {}
    for var, value in context.items():
        name = var.name
        if name.startswith("_"):
            continue
        if value.__class__ not in _PLAIN_SCALARS:
            try:
                pickle.dumps(value)
            except Exception:
                value = safe_repr(value)
        plain[ContextName(name)] = value
    return plain


#: ``extra=`` values that are copied at emit time: containers the caller may change after.
MUTABLE_CONTAINERS: frozenset[type] = frozenset({dict, list, set, bytearray})


def has_mutable_extras(d: dict[str, Any]) -> bool:
    """True when a fresh record's ``__dict__`` has an ``extra=`` field that
    :func:`snapshot_extras` would copy (the emit path then takes the copying path).

    A logger sets ``extra=`` fields after the standard ones: only those are looked at.
    """
    for key, value in islice(d.items(), RECORD_FIELDS, None):
        if value.__class__ in MUTABLE_CONTAINERS and key not in RESERVED_ATTRS:
            return True
    return False


def snapshot_extras(d: dict[str, Any]) -> None:
    """Replace, in a record's ``__dict__``, mutable ``extra=`` containers by shallow copies.

    A ``dict`` given in ``extra=`` and changed by the caller right after the call must
    still be written as it was at the call.
    """
    for key, value in d.items():
        if value.__class__ in MUTABLE_CONTAINERS and key not in RESERVED_ATTRS:
            d[key] = shallow_copy(value)


# -- freezing what could change: structlog's event dicts -------------------------------

_MAX_FREEZE_DEPTH = 32


class EventDict(dict[str, Any]):
    """A structlog event dict carried as a record's ``msg``; ``str()`` is the event text.

    It travels through the queue intact and the formatters in the listener turn its keys
    into fields (see :func:`aiolog.formatting.record_to_dict`). Being a ``str()``-able
    message, it also reads well to any plain :class:`logging.Formatter`
    (``%(message)s`` is the event) and it is still a dict to structlog's
    ``ProcessorFormatter``. Made by :func:`freeze_event`.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return safe_str(self.get("event"))


def _freeze(value: Any, depth: int) -> Any:
    """``value`` safe to read later on another thread: containers copied, objects rendered."""
    cls = value.__class__
    if cls in IMMUTABLE_TYPES:
        return value
    if depth >= _MAX_FREEZE_DEPTH:
        return safe_repr(value)
    depth += 1
    if isinstance(value, dict):
        return {key: _freeze(item, depth) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_freeze(item, depth) for item in value]
        return tuple(items) if cls is tuple else items
    if isinstance(value, enum.Enum):
        return value
    return safe_repr(value)  # could change before the listener runs: render it now


def exc_tuple(value: Any) -> Any:
    """structlog's ``exc_info`` value as a ``sys.exc_info()`` tuple (or None), taken now."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value
    if value:
        info = _exc_info()
        return info if info[0] is not None else None
    return None


def freeze_event(event_dict: Mapping[str, Any]) -> EventDict:
    """Copy a structlog event dict into an :class:`EventDict` the listener may read later.

    Immutable values are kept; dicts, lists and tuples are copied all the way down; other
    objects (they could change before the listener formats them) are replaced by their
    ``repr()``, which is also what JSON output would show. ``exc_info`` (``True``, an
    exception or a tuple) becomes a ``sys.exc_info()`` tuple taken now, on the thread
    that logs: the listener thread has no current exception.
    """
    return freeze_in_place(EventDict(event_dict))


def freeze_in_place(event: EventDict) -> EventDict:
    """:func:`freeze_event` for an :class:`EventDict` that nothing else refers to yet."""
    exc_info = event.pop("exc_info", None) if "exc_info" in event else None
    for key, value in event.items():
        if value.__class__ not in IMMUTABLE_TYPES:
            event[key] = _freeze(value, 0)  # a new value for a key: no resize, iteration goes on
    if exc_info is not None:
        exc_info = exc_tuple(exc_info)
        if exc_info is not None:
            event["exc_info"] = exc_info
    return event


class PreparedRecord(logging.LogRecord):
    """A record made with its emit-time context already captured (see :func:`fill_context`).

    :mod:`aiolog.structlog` builds its records this way, frozen and complete, so that
    :meth:`aiolog.QueueHandler.prepare` only has to copy them.
    """


def freeze_message(record: logging.LogRecord, d: dict[str, Any]) -> None:
    """Make a record's non-str ``msg`` (in ``d``, its dict's copy) safe to read later.

    A structlog event dict is frozen (:func:`freeze_event`), with arguments that could
    change rendered into its ``event``; any other object is rendered into text now.
    """
    msg = d["msg"]
    if msg.__class__ is dict and "event" in msg:  # structlog's ProcessorFormatter recipe
        msg = freeze_event(msg)
    if msg.__class__ is not EventDict:
        d["msg"] = get_message(record)
        d["args"] = None
        return
    if d["exc_info"] is None and "exc_info" in msg:
        d["exc_info"] = msg["exc_info"]
    args = d["args"]
    if args and (type(args) is not tuple or any(type(arg) not in IMMUTABLE_TYPES for arg in args)):
        rendered: logging.LogRecord = _new_record(_LogRecord)
        rendered.__dict__ = {"msg": msg, "args": args}
        msg = EventDict(msg)
        msg["event"] = get_message(rendered)
        d["args"] = None
    d["msg"] = msg
