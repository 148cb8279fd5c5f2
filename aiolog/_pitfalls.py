"""The records of :mod:`aiolog.asyncio_diag`: asyncio's pitfalls, taken apart into fields.

What each kind of record holds is in :mod:`aiolog.asyncio_diag`'s docstring; this module
builds them: :func:`exception_handler` from a ``call_exception_handler`` context, the
``asyncio`` logger's filter from a slow-callback warning, the ``py.warnings`` filter from a
never-awaited coroutine or a ``ResourceWarning``. Everything is read from the objects at
once, since asyncio calls these from ``__del__`` methods and at shutdown, and the record
must not refer to a task or handle that is gone by the time the listener formats it.
:mod:`aiolog.asyncio_diag` puts these on the loops and takes them off again.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import contextvars
import functools
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiolog._context import callable_name, log_about
from aiolog._executor import INTERNAL_THREADS
from aiolog._record import RESERVED_ATTRS, safe_repr

__all__ = ["exception_handler"]

_logger = logging.getLogger("asyncio")
_warnings_logger = logging.getLogger("py.warnings")
_get_running_loop = asyncio._get_running_loop
_get_ident = threading.get_ident

#: Names a context key cannot keep as a record attribute (logging's own, aiolog's, and the
#: formatters' fixed fields): such keys become ``asyncio_<key>``.
_TAKEN = RESERVED_ATTRS | {
    "timestamp",
    "level",
    "logger",
    "task",
    "coro",
    "callback",
    "exception",
    "stack",
    "context",
    "extra",
    "file",
    "line",
    "function",
}

_SLOW_MESSAGES = frozenset({"Executing %s took %.3f seconds", "Executing %r took %.3f seconds"})
_TASK_REPR = re.compile(
    r"<Task\b[^<>]*?\bname=(?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") coro=<(?P<coro>[^\s(]+)"
)
_HANDLE_REPR = re.compile(r"<(?:Timer)?Handle (?:cancelled )?(?:when=\S+ )?(?P<callback>[^\s>]+)")


# ---------------------------------------------------------------------------- field extraction


def _frames(summary: object) -> list[str] | None:
    """``["file:line in function", ...]`` from a stack summary, without reading sources.

    Takes asyncio's ``source_traceback`` (``FrameSummary`` objects or ``(file, line, name,
    ...)`` tuples, oldest first); the source lines are left out on purpose (``linecache``
    reads files, which the emit path never does).
    """
    if not summary:
        return None
    out = []
    try:
        for entry in summary:  # type: ignore[attr-defined]
            out.append(f"{entry[0]}:{entry[1]} in {entry[2]}")
    except Exception:
        return None
    return out


def _field(key: str) -> str:
    return f"asyncio_{key}" if key in _TAKEN or key.startswith("_") else key


def _callback_from_repr(text: str) -> str | None:
    """The callback's name in a handle's ``repr()`` (uvloop handles show nothing else)."""
    match = _HANDLE_REPR.match(text)
    if match is None:
        return None
    return match["callback"].split("(", 1)[0] or None


def _handle_subject(
    handle: object,
) -> tuple[asyncio.Task[Any] | None, str | None, contextvars.Context | None]:
    """(task, callback name, context) of a loop handle: asyncio's, or uvloop's by its repr."""
    callback = getattr(handle, "_callback", None)
    context = getattr(handle, "_context", None)
    if not isinstance(context, contextvars.Context):
        context = None
    if callback is None:
        return None, _callback_from_repr(safe_repr(handle)), context
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):  # the handle runs a step of this task
        return owner, None, _task_context(owner) or context
    return None, callable_name(callback), context


def _task_context(task: asyncio.Task[Any]) -> contextvars.Context | None:
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    if get_context is None:
        return None
    context = get_context()
    return context if isinstance(context, contextvars.Context) else None


def _classify(message: str, context: dict[str, Any]) -> str:
    if "exception was never retrieved" in message:
        return "never_retrieved"
    if message.startswith("Task was destroyed but it is pending"):
        return "pending_task_destroyed"
    if "handle" in context and "exception" in context:
        return "callback_exception"
    return "loop_exception"


def _context_record(
    context: dict[str, Any],
) -> tuple[logging.LogRecord, asyncio.Task[Any] | None, str | None, contextvars.Context | None]:
    """The record for a ``call_exception_handler`` context, and what it is about."""
    message = context.get("message")
    if not isinstance(message, str) or not message:
        message = "Unhandled exception in event loop"
    exception = context.get("exception")
    exc_info = None
    if isinstance(exception, BaseException):
        exc_info = (type(exception), exception, exception.__traceback__)
    task: asyncio.Task[Any] | None = None
    callback: str | None = None
    subject_context: contextvars.Context | None = None
    fields: dict[str, Any] = {"diagnostic": _classify(message, context)}
    for key, value in context.items():
        if key in ("message", "exception"):
            continue
        if key == "source_traceback":
            frames = _frames(value)
            if frames:
                fields["source_traceback"] = frames
            continue
        if key in ("task", "future"):
            if isinstance(value, asyncio.Task) and task is None:
                task = value
                subject_context = _task_context(value)
            fields["future"] = safe_repr(value)
            continue
        if key == "handle":
            handle_task, callback, handle_context = _handle_subject(value)
            if task is None and handle_task is not None:
                task = handle_task
            subject_context = subject_context or handle_context
            fields["handle"] = safe_repr(value)
            continue
        fields[_field(str(key))] = safe_repr(value)
    record = _logger.makeRecord(
        _logger.name, logging.ERROR, __file__, 0, message, (), exc_info, "exception_handler"
    )
    record.__dict__.update(fields)
    return record, task, callback, subject_context


def _emit(
    logger: logging.Logger,
    record: logging.LogRecord,
    task: asyncio.Task[Any] | None,
    callback: str | None,
    context: contextvars.Context | None,
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    """:func:`log_about`, or later on ``loop`` when this is one of aiolog's own threads.

    asyncio calls the exception handler from ``__del__``, which runs on whatever thread the
    garbage collector happens to run: on the listener thread, the record would be counted
    as aiolog's own and dropped, so it is handed to the loop it is about instead.
    """
    if _get_ident() in INTERNAL_THREADS:
        if loop is None and task is not None:
            loop = task.get_loop()
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(
                    functools.partial(
                        log_about, logger, record, task=task, callback=callback, context=context
                    )
                )
                return
            except RuntimeError:  # closed meanwhile
                pass
    log_about(logger, record, task=task, callback=callback, context=context)


# ---------------------------------------------------------------------------- exception handler

_local = threading.local()


def _handling() -> list[dict[str, Any]]:
    stack: list[dict[str, Any]] | None = getattr(_local, "handling", None)
    if stack is None:
        stack = _local.handling = []
    return stack


def exception_handler(loop: asyncio.AbstractEventLoop | None, context: dict[str, Any]) -> None:
    """Log a ``call_exception_handler`` context as one structured record; never raises.

    Usable as a loop's exception handler (``loop.set_exception_handler(exception_handler)``)
    or from an application's own handler. The record goes to the ``asyncio`` logger at
    ``ERROR``, with the fields listed in the module docstring and the context's message as
    its message; keys this module does not know (``protocol``, ``transport``, ...) are kept
    as ``repr()`` strings under their own name.
    """
    try:
        record, task, callback, subject_context = _context_record(context)
        _emit(_logger, record, task, callback, subject_context, loop)
    except Exception:  # never let logging break the loop: fall back to plain text
        with contextlib.suppress(Exception):
            _logger.error("%s", context.get("message"), exc_info=context.get("exception"))


def _default_exception_handler(context: dict[str, Any]) -> None:
    """A loop's ``default_exception_handler`` while aiolog is installed.

    Skips a context that a chained handler (:class:`_Chained`) has already logged and is
    now handing to the application's handler, which may defer to the default one.
    """
    for handled in _handling():
        if handled is context:
            return
    exception_handler(None, context)


class _Chained:
    """A loop exception handler that logs the context, then calls the one set before."""

    __slots__ = ("previous",)

    def __init__(self, previous: Callable[[Any, dict[str, Any]], object]) -> None:
        self.previous = previous

    def __repr__(self) -> str:
        return f"<aiolog exception handler, then {self.previous!r}>"

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception_handler(loop, context)
        stack = _handling()
        stack.append(context)
        try:
            self.previous(loop, context)
        finally:
            stack.pop()


# ---------------------------------------------------------------------------- slow callbacks


def _known_tasks() -> Iterator[asyncio.Task[Any]]:
    """Every task the process knows about, done ones included while they are alive."""
    for name in ("_scheduled_tasks", "_eager_tasks", "_all_tasks"):
        tasks: Iterable[Any] = getattr(asyncio.tasks, name, ())
        yield from list(tasks)


def _find_task(name: str, coro: str) -> asyncio.Task[Any] | None:
    """The one live task named ``name`` running ``coro``, if exactly one (uvloop only)."""
    found = None
    for task in _known_tasks():
        try:
            if task.get_name() != name or _coro_qualname(task) != coro:
                continue
        except Exception:
            continue
        if found is not None and found is not task:
            return None
        found = task
    return found


def _coro_qualname(task: asyncio.Task[Any]) -> str | None:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    return name if isinstance(name, str) else None


def _slow_subject(
    described: object,
) -> tuple[asyncio.Task[Any] | None, str | None, contextvars.Context | None, list[str] | None]:
    """What a slow-callback record is about: (task, callback, context, source traceback).

    asyncio keeps the handle it ran in ``loop._current_handle`` until after the warning;
    uvloop hands over only the handle (or its task's) ``repr()``, which is parsed, and the
    task found again by name among the live tasks.
    """
    handle = getattr(_get_running_loop(), "_current_handle", None)
    if handle is not None:
        task, callback, context = _handle_subject(handle)
        source = getattr(task if task is not None else handle, "_source_traceback", None)
        return task, callback, context, _frames(source)
    if isinstance(described, str):
        text, source = described, None
    else:  # a uvloop handle object
        text, source = safe_repr(described), getattr(described, "_source_traceback", None)
    match = _TASK_REPR.match(text)
    if match is None:
        return None, _callback_from_repr(text), None, _frames(source)
    try:
        name = ast.literal_eval(match["name"])
    except Exception:
        return None, None, None, None
    task = _find_task(name, match["coro"]) if isinstance(name, str) else None
    if task is None:
        return None, None, None, None
    return task, None, _task_context(task), _frames(getattr(task, "_source_traceback", None))


def _log_slow(record: logging.LogRecord) -> None:
    """Log an enriched copy of asyncio's "Executing <handle> took N seconds" record."""
    args = record.args
    assert isinstance(args, tuple)
    described, duration = args
    task, callback, context, source = _slow_subject(described)
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg = record.getMessage()
    copy.args = None
    copy.diagnostic = "slow_callback"
    copy.duration = duration
    copy.handle = described if isinstance(described, str) else safe_repr(described)
    if source:
        copy.source_traceback = source
    _emit(_logger, copy, task, callback, context, None)


class _AsyncioFilter(logging.Filter):
    """On the ``asyncio`` logger: replaces slow-callback records by structured ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            type(record.msg) is str
            and record.msg in _SLOW_MESSAGES
            and "diagnostic" not in record.__dict__
            and isinstance(record.args, tuple)
            and len(record.args) == 2
            and type(record.args[1]) is float
        ):
            try:
                _log_slow(record)
            except Exception:  # let asyncio's own record through instead
                return True
            return False
        return True


# ---------------------------------------------------------------------------- never awaited


def _warn_unawaited_coroutine(coro: Any) -> None:
    """Replacement for :func:`warnings._warn_unawaited_coroutine`, which CPython calls.

    Warns exactly as the original does (same category, location and ``source=``), so
    warning filters, ``-W error`` and ``catch_warnings`` keep working, but without reading
    source lines for the origin (``linecache`` I/O, inside a ``__del__``), and hands the
    coroutine's name and origin to :class:`_WarningsFilter` to put on the record.
    """
    qualname = getattr(coro, "__qualname__", None) or safe_repr(coro)
    origin = getattr(coro, "cr_origin", None)
    frames = [f"{f}:{line} in {name}" for f, line, name in reversed(origin)] if origin else None
    msg = f"coroutine '{qualname}' was never awaited"
    if frames:
        where = "".join(f"\n  {frame}" for frame in frames)
        msg = f"{msg}\nCoroutine created at (most recent call last){where}"
    _local.unawaited = (qualname, frames)
    try:
        warnings.warn(msg, category=RuntimeWarning, stacklevel=2, source=coro)
    finally:
        _local.unawaited = None


_RESOURCE_WARNING = re.compile(r"(?P<file>.*):(?P<line>\d+): ResourceWarning: (?P<message>[^\n]*)")


class _WarningsFilter(logging.Filter):
    """On ``py.warnings``: fields for never-awaited coroutines and resource warnings.

    ``logging.captureWarnings`` logs each warning as one formatted string; a coroutine's
    name and origin come from :func:`_warn_unawaited_coroutine`, and a ``ResourceWarning``
    (an unclosed socket, transport or file) is split into its message and ``warned_at``
    (the ``file:line`` that dropped the last reference).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        pending = getattr(_local, "unawaited", None)
        if pending is not None:
            _local.unawaited = None
            qualname, frames = pending
            record.msg = "coroutine '%s' was never awaited"
            record.args = (qualname,)
            record.diagnostic = "never_awaited"
            record.coroutine = qualname
            if frames:
                record.source_traceback = frames
            return True
        text: object = record.msg  # logger.warning(str(s)) on 3.11+
        args = record.args
        if text == "%s" and isinstance(args, tuple) and len(args) == 1:  # 3.10
            text = args[0]
        elif args:
            return True
        match = _RESOURCE_WARNING.match(text) if isinstance(text, str) else None
        if match is not None:
            record.msg = match["message"]
            record.args = None
            record.diagnostic = "resource_warning"
            record.warned_at = f"{match['file']}:{match['line']}"
        return True


_asyncio_filter = _AsyncioFilter()
_warnings_filter = _WarningsFilter()
