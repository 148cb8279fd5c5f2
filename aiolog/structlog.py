"""structlog through aiolog: cheap on the event loop, rendered in the listener.

::

    import aiolog, structlog

    aiolog.configure(["stderr", "file:logs/app.jsonl"], structlog=True)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    structlog.get_logger().info("user logged in", user="ann", roles=["admin"])
    # {"timestamp": ..., "level": "info", "logger": "app", "message": "user logged in",
    #  "task": "Task-1", "coro": "handle", ..., "user": "ann", "roles": ["admin"],
    #  "request_id": "r-1"}

A structlog call costs the caller only what cannot wait: the level check, the event dict
that structlog builds anyway, the user's own processors, and :func:`to_aiolog`, which
freezes the event dict (see :func:`aiolog._record.freeze_event`) and returns it as the
``msg`` of a :class:`logging.LogRecord`. The rest is done by what stdlib records already
get: the record goes through the logger of the same name (its level, filters, handlers),
aiolog's handler captures the asyncio task, coroutine and a :mod:`contextvars` snapshot,
and the listener formats it with the sink's formatter, whose fields are the event dict's
keys plus the variables bound with :func:`structlog.contextvars.bind_contextvars` (read
from the snapshot: no ``merge_contextvars`` is needed on the caller). Level, logger name,
timestamp, task and coroutine come from the record, not from processors.

:class:`LoggerFactory` makes the objects structlog wraps, :class:`AiologLogger`: they
build the record directly instead of through :meth:`logging.Logger._log`, which spends
most of its time finding the caller's frame and in :class:`logging.LogRecord`'s
constructor. :class:`BoundLogger` checks the stdlib logger's level before any processor
runs, and its ``await log.ainfo(...)`` methods log at once (the emit path never blocks, so
there is nothing to hand to a thread).

Everything here also works with structlog's own stdlib integration
(``structlog.stdlib.LoggerFactory`` and ``BoundLogger``): :func:`to_aiolog` returns what a
:class:`logging.Logger` method takes, and aiolog's handler keeps an event dict intact
(structlog #702). ``docs/structlog.md`` has the recipes and the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from types import FrameType
from typing import Any

import structlog
import structlog.contextvars
from structlog.typing import Processor, WrappedLogger

from aiolog._context import ORIGIN_TASK, callback_name, fill_context
from aiolog._handler import BaseQueueHandler
from aiolog._record import (
    EventDict,
    PreparedRecord,
    exc_tuple,
    freeze_event,
    freeze_in_place,
    task_coro_name,
)

__all__ = [
    "AiologLogger",
    "BoundLogger",
    "EventDict",
    "LoggerFactory",
    "add_task_context",
    "configure_structlog",
    "merge_record_contextvars",
    "to_aiolog",
]

_NO_KWARGS: Mapping[str, Any] = {}
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


# ---------------------------------------------------------------------------- processors


def add_task_context(
    logger: WrappedLogger, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add ``task`` and ``coro`` (or ``callback``) to the event dict, as aiolog's handler does.

    ``task`` is the asyncio task's name and ``coro`` its coroutine's qualified name; a
    record logged from a plain loop callback gets ``callback`` instead, and one logged from
    an :func:`asyncio.to_thread` worker the task that started it. Keys already in the
    event dict are kept.

    Records routed by :func:`to_aiolog` carry this context without it; it is for chains
    that render on the caller (structlog's own ``JSONRenderer`` to a file, say).
    """
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    if task is None:
        if loop is not None:
            callback = callback_name()
            if callback is not None:
                event_dict.setdefault("callback", callback)
            return event_dict
        ref = ORIGIN_TASK.get()
        task = ref() if ref is not None else None
        if task is None:
            return event_dict
    event_dict.setdefault("task", task.get_name())
    event_dict.setdefault("coro", task_coro_name(task))
    return event_dict


def to_aiolog(
    logger: WrappedLogger, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
    """The last processor: hand the event dict to logging as a record's ``msg``, intact.

    Returns ``((event_dict, *positional_args), kwargs)``, what a :class:`logging.Logger`
    method (or an :class:`AiologLogger`'s) takes. The event dict is frozen
    (:func:`aiolog._record.freeze_event`); ``exc_info`` becomes the record's exception,
    captured now; ``stack_info=True`` the record's stack (without source lines: reading
    them is I/O); ``positional_args`` (structlog's ``log.info("%s", x)``) the record's
    ``args``, formatted in the listener. ``_logger``/``_name`` go along as record
    attributes, so structlog's ``ProcessorFormatter`` can render the record too.
    """
    positional = event_dict.pop("positional_args", ()) if "positional_args" in event_dict else ()
    stack = event_dict.pop("stack_info", False) if "stack_info" in event_dict else False
    msg = freeze_event(event_dict)
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method_name}}
    exc_info = msg.get("exc_info")
    if exc_info is not None:
        kwargs["exc_info"] = exc_info
    if stack:
        kwargs["stack_info"] = True
    if positional:
        return (msg, *positional), kwargs
    return (msg,), kwargs


def merge_record_contextvars(
    logger: WrappedLogger, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For a ``ProcessorFormatter`` chain: merge the bindings captured when the record was made.

    In the listener thread, :func:`structlog.contextvars.merge_contextvars` would read
    that thread's variables. This reads aiolog's emit-time snapshot of the record
    (``event_dict["_record"].aiolog_context``) instead, with the same rule: keys the event
    has already win.
    """
    record = event_dict.get("_record")
    context = getattr(record, "aiolog_context", None)
    if context is None:
        return event_dict
    prefix = structlog.contextvars.STRUCTLOG_KEY_PREFIX
    for var, value in context.items():
        name = var.name
        if name.startswith(prefix) and value is not Ellipsis:
            event_dict.setdefault(name[len(prefix) :], value)
    return event_dict


# ---------------------------------------------------------------------------- the logger

_new_record = logging.LogRecord.__new__
_getframe = sys._getframe
_time_ns = time.time_ns
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_level_names: dict[int, str] = logging._levelToName
_start_time = logging._startTime  # type: ignore[attr-defined]
_START_NS = _start_time if isinstance(_start_time, int) else int(_start_time * 1e9)
_HAS_TASKNAME = sys.version_info >= (3, 12)

#: Every key of a record this module makes, in the stdlib's order, then aiolog's.
_RECORD_TEMPLATE: dict[str, Any] = {
    **logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
    "taskName": None,
    "aiolog_coro": None,
    "aiolog_context": None,
    "_logger": None,
    "_name": None,
}
_RECORD_TEMPLATE.update(dict.fromkeys(_RECORD_TEMPLATE))

#: Source files whose frames are skipped when looking for the caller: structlog's and ours.
_INTERNAL_PREFIXES = (os.path.dirname(structlog.__file__) + os.sep, __file__)
_internal_files: dict[str, bool] = {}
#: ``co_filename`` -> ``(filename, module)``, as LogRecord computes them.
_file_parts: dict[str, tuple[str, str]] = {}


def _is_internal(filename: str) -> bool:
    internal = _internal_files.get(filename)
    if internal is None:
        internal = filename.startswith(_INTERNAL_PREFIXES)
        _internal_files[filename] = internal
    return internal


def _caller(depth: int, stacklevel: int) -> FrameType | None:
    """The first frame outside structlog and this module, ``stacklevel - 1`` more up."""
    try:
        frame: FrameType | None = _getframe(depth + 1)
    except ValueError:
        return None
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    while stacklevel > 1 and frame is not None and frame.f_back is not None:
        frame = frame.f_back
        stacklevel -= 1
    return frame


def _parts(pathname: str) -> tuple[str, str]:
    parts = _file_parts.get(pathname)
    if parts is None:
        filename = os.path.basename(pathname)
        parts = (filename, os.path.splitext(filename)[0])
        if len(_file_parts) < 4096:
            _file_parts[pathname] = parts
    return parts


def _stack(frame: FrameType | None) -> str:
    """The stack above ``frame`` as ``logging`` prints it, minus the source lines (no I/O)."""
    summary = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in reversed(summary)]
    return "Stack (most recent call last):\n" + "".join(lines).rstrip("\n")


def _reset_pid() -> None:
    global _pid
    _pid = os.getpid()


_pid = os.getpid()
os.register_at_fork(after_in_child=_reset_pid)


def _make_record(
    name: str,
    level: int,
    msg: Any,
    args: Any,
    exc_info: Any,
    stack_info: bool,
    frame: FrameType | None,
) -> PreparedRecord:
    """A :class:`logging.LogRecord`'s attributes, without its constructor's lookups.

    The same values as the stdlib's (honouring ``logging.logThreads`` and friends), the
    caller's location from ``frame``, and the emit-time context aiolog's handler would
    capture (:func:`aiolog._context.fill_context`). The process id is cached (renewed in
    a forked child): ``os.getpid()`` is a system call on every record otherwise.
    """
    if frame is not None:
        code = frame.f_code
        pathname, lineno, func = code.co_filename, frame.f_lineno, code.co_name
    else:
        pathname, lineno, func = "(unknown file)", 0, "(unknown function)"
    filename, module = _parts(pathname)
    ct = _time_ns()
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]
    # A copy of a template with every key is about twice as fast as a dict display.
    d = _RECORD_TEMPLATE.copy()
    d["name"] = name
    d["msg"] = msg
    d["args"] = args
    d["levelname"] = _level_names.get(level) or f"Level {level}"
    d["levelno"] = level
    d["pathname"] = pathname
    d["filename"] = filename
    d["module"] = module
    if exc_info:
        d["exc_info"] = exc_tuple(exc_info)
    if stack_info:
        d["stack_info"] = _stack(frame)
    d["lineno"] = lineno
    d["funcName"] = func
    d["created"] = ct / 1e9
    d["msecs"] = (ct % 1_000_000_000) // 1_000_000 + 0.0
    d["relativeCreated"] = (ct - _START_NS) / 1e6
    if logging.logThreads:
        d["thread"] = _get_ident()
        d["threadName"] = _current_thread().name
    if logging.logMultiprocessing:
        process_name = "MainProcess"
        mp = sys.modules.get("multiprocessing")
        if mp is not None:
            try:  # noqa: SIM105 - contextlib.suppress would cost more than the call
                process_name = mp.current_process().name
            except Exception:  # as the stdlib: keep the default
                pass
        d["processName"] = process_name
    if logging.logProcesses:
        d["process"] = _pid
    fill_context(d)  # task, coroutine, contextvars: aiolog's handler only copies then
    record: PreparedRecord = _new_record(PreparedRecord)
    record.__dict__ = d
    return record


class AiologLogger:
    """What structlog wraps: a stand-in for :class:`logging.Logger` that makes records cheaply.

    Its level methods take what a :class:`logging.Logger`'s take, build the
    :class:`logging.LogRecord` directly (the same attributes, without the logger's
    ``findCaller`` walk and the record constructor's lookups) and pass it to
    :meth:`logging.Logger.handle` of the stdlib logger of the same name, so levels,
    filters, handlers and propagation are the stdlib's. The caller's location is the first
    frame outside structlog and this module.
    """

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = logging.getLogger(name)

    def __repr__(self) -> str:
        return f"<AiologLogger {self.name!r}>"

    def isEnabledFor(self, level: int) -> bool:
        """Whether the stdlib logger of this name would handle ``level``."""
        return self._logger.isEnabledFor(level)

    def getEffectiveLevel(self) -> int:
        """The stdlib logger's effective level."""
        return self._logger.getEffectiveLevel()

    def _log(
        self,
        level: int,
        msg: Any,
        args: tuple[Any, ...],
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, Any] | None = None,
        caller: FrameType | None = None,
    ) -> None:
        """Make the record (``caller``: the frame that logged, if known) and handle it."""
        frame = caller if caller is not None else _caller(2, stacklevel)
        record = _make_record(self.name, level, msg, args, exc_info, stack_info, frame)
        if extra:
            record.__dict__.update(extra)
        self._handle(record)

    def _handle(self, record: PreparedRecord) -> None:
        """:meth:`logging.Logger.handle`, with a shortcut for the usual setup.

        When the only handler the record would reach is an :class:`aiolog.QueueHandler`
        (not a subclass), the record goes to it without the copy a handler makes for the
        others' sake: nothing else sees it. Otherwise the stdlib does the work.
        """
        logger = self._logger
        if logger.disabled:
            return
        if logger.filters:
            result = logger.filter(record)
            if not result:
                return
            if isinstance(result, logging.LogRecord) and result is not record:
                logger.callHandlers(result)
                return
        only: logging.Handler | None = None
        current: logging.Logger | None = logger
        while current is not None:
            handlers = current.handlers
            if handlers:
                if only is not None or len(handlers) > 1:
                    logger.callHandlers(record)
                    return
                only = handlers[0]
            current = current.parent if current.propagate else None
        if only is None or not isinstance(only, BaseQueueHandler) or not only._packs:
            logger.callHandlers(record)
        elif record.levelno >= only.level:
            only.emit_prepared(record)

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` at ``level``, as :meth:`logging.Logger.log`."""
        if self._logger.isEnabledFor(level):
            self._log(level, msg, args, **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.debug`."""
        if self._logger.isEnabledFor(logging.DEBUG):
            self._log(logging.DEBUG, msg, args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.info`."""
        if self._logger.isEnabledFor(logging.INFO):
            self._log(logging.INFO, msg, args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.warning`."""
        if self._logger.isEnabledFor(logging.WARNING):
            self._log(logging.WARNING, msg, args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.error`."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._log(logging.ERROR, msg, args, **kwargs)

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.exception`."""
        self.error(msg, *args, exc_info=exc_info, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`logging.Logger.critical`."""
        if self._logger.isEnabledFor(logging.CRITICAL):
            self._log(logging.CRITICAL, msg, args, **kwargs)

    warn = warning
    fatal = critical


class LoggerFactory:
    """structlog's ``logger_factory``: an :class:`AiologLogger` per name.

    ``structlog.get_logger("name")`` names it; without a name, the module that makes the
    first call (as ``structlog.stdlib.LoggerFactory`` does).
    """

    def __init__(self) -> None:
        self._loggers: dict[str, AiologLogger] = {}

    def __call__(self, *args: Any) -> AiologLogger:
        if args and isinstance(args[0], str):
            name = args[0]
        else:
            frame = _caller(1, 1)
            name = frame.f_globals.get("__name__", "?") if frame is not None else "?"
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers.setdefault(name, AiologLogger(name))
        return logger


class BoundLogger(structlog.BoundLoggerBase):
    """structlog's bound logger for aiolog: the level check first, async without a thread.

    The wrapped logger (an :class:`AiologLogger`, or a :class:`logging.Logger`) decides
    the level, so structlog and :mod:`logging` share it: a call below it returns before
    the event dict is even built. ``log.info("%s items", n)`` formats in the listener.
    ``await log.ainfo(...)`` and friends are the same calls as coroutines: with aiolog the
    emit never blocks, so there is nothing to move to a thread pool.
    """

    _logger: Any

    @property
    def name(self) -> str:
        """The wrapped logger's name."""
        return str(self._logger.name)

    def isEnabledFor(self, level: int) -> bool:
        """Whether a record at ``level`` would be logged."""
        return bool(self._logger.isEnabledFor(level))

    def getEffectiveLevel(self) -> int:
        """The wrapped logger's effective level."""
        return int(self._logger.getEffectiveLevel())

    def _emit(self, level: int, method: str, event: Any, args: Sequence[Any], kw: Any) -> Any:
        """Check the level, run the processors, hand the result to the wrapped logger.

        structlog's ``_process_event`` and ``_proxy_to_logger``, inlined: this runs on the
        event loop for every call. An :class:`AiologLogger` is called directly, with the
        caller's frame (always two frames up), sparing it the level check and the walk.
        """
        logger = self._logger
        if not logger.isEnabledFor(level):
            return None
        processors: Any = self._processors
        if logger.__class__ is AiologLogger and len(processors) == 1 and processors[0] is to_aiolog:
            # The default chain: what to_aiolog does, straight into one EventDict.
            frozen = EventDict(self._context)
            if kw:
                frozen.update(kw)
            if event is not None:
                frozen["event"] = event
            stack = frozen.pop("stack_info", False) if "stack_info" in frozen else False
            freeze_in_place(frozen)
            record = _make_record(
                logger.name, level, frozen, args, frozen.get("exc_info"), stack, _getframe(2)
            )
            record._logger = logger
            record._name = method
            return logger._handle(record)
        if args:
            kw["positional_args"] = args
        event_dict: Any = self._context.copy()
        event_dict.update(kw)
        if event is not None:
            event_dict["event"] = event
        try:
            for processor in processors:
                event_dict = processor(logger, method, event_dict)
        except structlog.DropEvent:
            return None
        if event_dict.__class__ is tuple:
            largs, lkwargs = event_dict
            if logger.__class__ is AiologLogger:
                return logger._log(level, largs[0], largs[1:], caller=_getframe(2), **lkwargs)
        elif isinstance(event_dict, (str, bytes, bytearray)):
            largs, lkwargs = (event_dict,), _NO_KWARGS
        elif isinstance(event_dict, dict):
            largs, lkwargs = (), event_dict
        else:
            largs, lkwargs = event_dict
        return getattr(logger, method)(*largs, **lkwargs)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG."""
        return self._emit(logging.DEBUG, "debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO."""
        return self._emit(logging.INFO, "info", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING."""
        return self._emit(logging.WARNING, "warning", event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR."""
        return self._emit(logging.ERROR, "error", event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at CRITICAL."""
        return self._emit(logging.CRITICAL, "critical", event, args, kw)

    fatal = critical

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR with the exception being handled."""
        kw.setdefault("exc_info", True)
        return self._emit(logging.ERROR, "error", event, args, kw)

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ``level`` (a number)."""
        method = logging.getLevelName(level).lower()
        if method not in _LEVELS:
            method = "info" if level < logging.WARNING else "error"
        return self._emit(level, method, event, args, kw)

    async def adebug(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`debug` as a coroutine (it never blocks)."""
        self._emit(logging.DEBUG, "debug", event, args, kw)

    async def ainfo(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`info` as a coroutine (it never blocks)."""
        self._emit(logging.INFO, "info", event, args, kw)

    async def awarning(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`warning` as a coroutine (it never blocks)."""
        self._emit(logging.WARNING, "warning", event, args, kw)

    async def aerror(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`error` as a coroutine (it never blocks)."""
        self._emit(logging.ERROR, "error", event, args, kw)

    async def acritical(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`critical` as a coroutine (it never blocks)."""
        self._emit(logging.CRITICAL, "critical", event, args, kw)

    async def aexception(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`exception` as a coroutine (it never blocks)."""
        kw.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, args, kw)

    async def alog(self, level: int, event: Any = None, *args: Any, **kw: Any) -> None:
        """:meth:`log` as a coroutine (it never blocks)."""
        self.log(level, event, *args, **kw)


def configure_structlog(
    processors: Iterable[Processor] = (), *, cache_logger_on_first_use: bool = True
) -> None:
    """Configure structlog to log through aiolog (``aiolog.configure(structlog=True)`` does it).

    :param processors: processors to run on the caller before :func:`to_aiolog` (none is
        needed: level, logger, timestamp, task, coroutine and the contextvars bindings come
        from the record). Keep them cheap: they run on the event loop.
    :param cache_logger_on_first_use: as in :func:`structlog.configure`.
    """
    structlog.configure(
        processors=[*processors, to_aiolog],
        wrapper_class=BoundLogger,
        logger_factory=LoggerFactory(),
        context_class=dict,
        cache_logger_on_first_use=cache_logger_on_first_use,
    )
