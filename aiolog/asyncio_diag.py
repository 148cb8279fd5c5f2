"""asyncio's pitfalls as structured records.

The Python docs' "Developing with asyncio" page lists the traps: slow callbacks, coroutines
never awaited, exceptions never retrieved, exceptions in callbacks. asyncio reports each as
one flat line of text on the ``asyncio`` logger (or as a bare :class:`RuntimeWarning`), with
the task, the handle and where they were created glued into a string. This module turns
them into records whose fields a log pipeline can filter, count and alert on:

==================  ==========================================================================
``diagnostic``      ``never_retrieved``, ``pending_task_destroyed``, ``callback_exception``,
                    ``loop_exception`` (anything else given to the exception handler),
                    ``slow_callback``, ``never_awaited`` or ``resource_warning``: the kind
                    of record, to filter on
task / coro         the task the record is about (the task whose exception was lost, the task
                    whose step was slow), as the record's own ``task``/``coro`` fields
callback            the loop callback the record is about (a callback that raised or was slow)
``future``          ``repr()`` of the future or task the loop's context names
``handle``          ``repr()`` of the handle the loop's context names (or the slow one)
exception           the exception (``exc_info``), which formatters render as
                    ``{type, message, traceback}``
``source_traceback``  where the task, handle or coroutine was created, most recent call last,
                    as ``"file:line in function"`` strings (loop debug mode only)
``duration``        seconds a slow callback took (float)
``coroutine``       qualified name of a coroutine that was never awaited
``warned_at``       ``file:line`` where a ``ResourceWarning``'s object was dropped
==================  ==========================================================================

Everything is taken from the objects at once, in the exception handler or the warning hook
(which asyncio calls from ``__del__`` methods and at shutdown): a record never refers to a
task or handle that may be gone or changed by the time the listener formats it.

:func:`install` (called by :func:`aiolog.configure`) puts this on every event loop, asyncio's
or uvloop's, that is created or started afterwards, and on the loop running at the time:

* loop birth (``BaseEventLoop.__init__``, ``uvloop.Loop.__init__``) and loop start
  (``asyncio`` calls ``_set_running_loop``; uvloop's ``run_forever``) are hooked, so
  ``asyncio.run()``, ``asyncio.Runner``, ``asyncio.run(loop_factory=...)``, ``uvloop.run()``
  and loops driven by hand are all covered;
* each such loop gets a structured ``default_exception_handler`` (a handler the application
  sets keeps full control and can defer to it, as asyncio's docs recommend); a handler that
  was already set when aiolog arrived is chained: aiolog logs, then calls it;
* each such loop gets a :class:`aiolog._context.TaskFactory` (wrapping a factory already set),
  so records logged from :func:`asyncio.to_thread` workers name the task that asked;
* with ``debug=True`` (``configure(asyncio_debug=True)`` or ``AIOLOG_ASYNCIO_DEBUG=1``): loop
  debug mode, ``slow_callback_duration``, the ``asyncio`` logger at ``DEBUG`` and
  :class:`ResourceWarning` shown: what the docs recommend for development.

:func:`uninstall` (called by :func:`aiolog.shutdown`) undoes all of it, loops included.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import re
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiolog._context import ORIGIN_TASK, TaskFactory, TaskRef, callable_name, drive, log_about
from aiolog._executor import INTERNAL_THREADS
from aiolog._record import RESERVED_ATTRS, safe_repr

__all__ = ["exception_handler", "install", "installed", "uninstall"]

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

_ENV_TRUE = frozenset({"1", "true", "yes", "on"})
_ENV_FALSE = frozenset({"", "0", "false", "no", "off"})


# ---------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class _Settings:
    debug: bool = False
    slow_callback_duration: float | None = None


def _resolve(debug: bool | None, slow_callback_duration: float | None) -> _Settings:
    """Validated settings; ``debug=None`` reads ``AIOLOG_ASYNCIO_DEBUG``.

    :raises ValueError: for a bad environment value or duration.
    """
    if debug is None:
        raw = os.environ.get("AIOLOG_ASYNCIO_DEBUG", "").strip().lower()
        if raw in _ENV_TRUE:
            debug = True
        elif raw in _ENV_FALSE:
            debug = False
        else:
            raise ValueError(f"AIOLOG_ASYNCIO_DEBUG must be 1 or 0, not {raw!r}")
    slow = slow_callback_duration
    if slow is not None:
        if isinstance(slow, bool) or not isinstance(slow, int | float) or not slow > 0:
            raise ValueError(f"asyncio slow callback duration must be > 0 seconds, not {slow!r}")
        slow = float(slow)
    return _Settings(bool(debug), slow)


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


# ---------------------------------------------------------------------------- loops


@dataclasses.dataclass
class _LoopState:
    """What aiolog changed on one loop, to put back at :func:`uninstall`."""

    debug: bool
    slow_callback_duration: float
    forced_debug: bool = False
    forced_slow: bool = False


_lock = threading.RLock()
_settings: _Settings | None = None
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
    weakref.WeakKeyDictionary()
)


def _adopt(loop: asyncio.AbstractEventLoop) -> None:
    """Put the handler, the task factory and the debug settings on ``loop`` (idempotent).

    Called at a loop's birth and at each start, so a handler or factory that the
    application set in between is chained rather than lost.
    """
    with _lock:
        settings = _settings
        if settings is None or _get_ident() in INTERNAL_THREADS or loop.is_closed():
            return
        state = _loops.get(loop)
        if state is None:
            state = _LoopState(loop.get_debug(), loop.slow_callback_duration)
            _loops[loop] = state
            if _is_uvloop(loop):
                _patch_uvloop()
        if loop.__dict__.get("default_exception_handler") is not _default_exception_handler:
            loop.default_exception_handler = _default_exception_handler  # type: ignore[method-assign]
        handler = loop.get_exception_handler()
        if handler is not None and not isinstance(handler, _Chained):
            loop.set_exception_handler(_Chained(handler))
        factory = loop.get_task_factory()
        if not isinstance(factory, TaskFactory):
            loop.set_task_factory(TaskFactory(factory))
            _name_existing_tasks(loop)
        if settings.debug and not loop.get_debug():
            loop.set_debug(True)
            state.forced_debug = True
        if settings.slow_callback_duration is not None:
            loop.slow_callback_duration = settings.slow_callback_duration
            state.forced_slow = True


def _name_existing_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Set ORIGIN_TASK for tasks made before aiolog's factory was on the loop.

    Python 3.12+ hands out each task's context; before, only the context of a task whose
    first step is still queued on an asyncio loop can be reached. The running task's
    context is the current one.
    """
    try:
        current = asyncio.current_task(loop) if _get_running_loop() is loop else None
        if current is not None:
            ORIGIN_TASK.set(TaskRef(current))
        contexts: list[tuple[asyncio.Task[Any], contextvars.Context]] = []
        for task in asyncio.all_tasks(loop):
            context = _task_context(task)
            if context is not None:
                contexts.append((task, context))
        if sys.version_info < (3, 12):
            for handle in list(getattr(loop, "_ready", ())):
                owner = getattr(getattr(handle, "_callback", None), "__self__", None)
                context = getattr(handle, "_context", None)
                if isinstance(owner, asyncio.Task) and isinstance(context, contextvars.Context):
                    contexts.append((owner, context))
        for task, context in contexts:
            if task is current:
                continue
            ref = context.get(ORIGIN_TASK)
            if ref is None or ref() is not task:
                with contextlib.suppress(RuntimeError):  # entered: running right now
                    context.run(ORIGIN_TASK.set, TaskRef(task))
    except Exception:  # best effort: a loop or Python version this does not know
        pass


def _release(loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
    """Take aiolog's handler and factory off ``loop`` and restore what it changed."""
    if loop.__dict__.get("default_exception_handler") is _default_exception_handler:
        del loop.default_exception_handler
    handler = loop.get_exception_handler()
    if isinstance(handler, _Chained):
        loop.set_exception_handler(handler.previous)
    factory = loop.get_task_factory()
    if isinstance(factory, TaskFactory):
        loop.set_task_factory(factory.inner)
    if loop.is_closed():
        return
    if state.forced_debug:
        loop.set_debug(state.debug)
    if state.forced_slow:
        loop.slow_callback_duration = state.slow_callback_duration


# ---------------------------------------------------------------------------- hooks


class _Patch:
    """One attribute replaced on a class or module, and how to put it back."""

    def __init__(self, owner: Any, name: str, replacement: Any) -> None:
        self.owner = owner
        self.name = name
        self.replacement = replacement
        self.had_own = name in vars(owner)
        self.original = vars(owner).get(name)
        setattr(owner, name, replacement)

    def undo(self) -> None:
        if vars(self.owner).get(self.name) is not self.replacement:
            return  # patched again on top of ours: leave it (ours passes through)
        if self.had_own:
            setattr(self.owner, self.name, self.original)
        else:
            delattr(self.owner, self.name)


_patches: list[_Patch] = []
_uvloop_patched = False


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _settings is not None:
            _adopt(self)

    return __init__


def _wrap_set_running_loop(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def _set_running_loop(loop: Any) -> None:
        original(loop)
        if loop is not None and _settings is not None:
            _adopt(loop)

    return _set_running_loop


def _wrap_run_forever(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def run_forever(self: Any) -> Any:
        if _settings is not None:
            _adopt(self)
        return drive(original, self)

    return run_forever


def _is_uvloop(loop: object) -> bool:
    uvloop = sys.modules.get("uvloop")
    cls = getattr(uvloop, "Loop", None)
    return isinstance(cls, type) and isinstance(loop, cls)


def _patch_uvloop() -> None:
    """Hook ``uvloop.Loop`` (its Python subclass) once uvloop is imported."""
    global _uvloop_patched
    uvloop = sys.modules.get("uvloop")
    cls = getattr(uvloop, "Loop", None)
    if _uvloop_patched or not isinstance(cls, type):
        return
    _uvloop_patched = True
    loop_cls: Any = cls
    _patches.append(_Patch(loop_cls, "__init__", _wrap_init(loop_cls.__init__)))
    _patches.append(_Patch(loop_cls, "run_forever", _wrap_run_forever(loop_cls.run_forever)))


#: CPython 3.13.0-3.13.2 name every task made through a task factory "None" unless given a
#: name (python/cpython#130033); 3.13.3 passes the name to the factory instead.
_FACTORY_NAMES_TASKS_NONE = (3, 13, 0) <= sys.version_info[:3] < (3, 13, 3)


def _wrap_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, *, name: Any = None, context: Any = None) -> Any:
        factory = self._task_factory
        if name is not None or not isinstance(factory, TaskFactory):
            return original(self, coro, name=name, context=context)
        self._check_closed()  # what the original does, without set_name(None)
        if context is None:
            return factory(self, coro)
        return factory(self, coro, context=context)

    return create_task


def _patch_all() -> None:
    base = asyncio.BaseEventLoop
    _patches.append(_Patch(base, "__init__", _wrap_init(base.__init__)))
    if _FACTORY_NAMES_TASKS_NONE:
        _patches.append(_Patch(base, "create_task", _wrap_create_task(base.create_task)))
    hook = _wrap_set_running_loop(asyncio.events._set_running_loop)
    _patches.append(_Patch(asyncio.events, "_set_running_loop", hook))
    _patches.append(_Patch(asyncio, "_set_running_loop", hook))
    _patch_uvloop()
    _patches.append(_Patch(warnings, "_warn_unawaited_coroutine", _warn_unawaited_coroutine))
    _logger.addFilter(_asyncio_filter)
    _warnings_logger.addFilter(_warnings_filter)


def _unpatch_all() -> None:
    global _uvloop_patched
    while _patches:
        _patches.pop().undo()
    _uvloop_patched = False
    _logger.removeFilter(_asyncio_filter)
    _warnings_logger.removeFilter(_warnings_filter)


_asyncio_filter = _AsyncioFilter()
_warnings_filter = _WarningsFilter()


# ---------------------------------------------------------------------------- debug switch


@dataclasses.dataclass
class _GlobalDebug:
    """The process-wide part of debug mode, and what it replaced."""

    asyncio_level: int
    resource_filter: Any


_global_debug: _GlobalDebug | None = None


def _debug_on() -> None:
    global _global_debug
    if _global_debug is not None:
        return
    level = _logger.level
    _logger.setLevel(logging.DEBUG)
    warnings.filterwarnings("default", category=ResourceWarning)
    _global_debug = _GlobalDebug(level, warnings.filters[0])


def _debug_off() -> None:
    global _global_debug
    state = _global_debug
    if state is None:
        return
    _global_debug = None
    if _logger.level == logging.DEBUG:
        _logger.setLevel(state.asyncio_level)
    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    if state.resource_filter in filters:
        filters.remove(state.resource_filter)
        mutated = getattr(warnings, "_filters_mutated", None)  # resets "once" registries
        if mutated is not None:
            mutated()


# ---------------------------------------------------------------------------- public


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _settings is not None


def install(*, debug: bool | None = None, slow_callback_duration: float | None = None) -> None:
    """Report asyncio's pitfalls as structured records, on every loop from now on.

    See the module docstring for what is hooked. Calling it again applies new settings;
    :func:`aiolog.configure` calls it, :func:`aiolog.shutdown` undoes it.

    :param debug: turn on what asyncio's docs recommend for development: debug mode on every
        loop (slow callbacks reported, task and handle creation tracebacks kept,
        coroutine origins tracked), the ``asyncio`` logger at ``DEBUG``, and
        :class:`ResourceWarning` shown. ``None`` reads ``AIOLOG_ASYNCIO_DEBUG`` (``1``/``0``).
    :param slow_callback_duration: seconds above which a callback or task step is reported
        as slow in debug mode (asyncio's default: 0.1).
    :raises ValueError: for a bad setting, before anything is changed.

    .. versionadded:: 0.1.0
    """
    _install(_resolve(debug, slow_callback_duration))


def _install(settings: _Settings) -> None:
    global _settings
    with _lock:
        loops = list(_loops.items())
        if _settings is None:
            _patch_all()
        else:
            for loop, state in loops:
                _release(loop, state)
            _loops.clear()
        _settings = settings
        if settings.debug:
            _debug_on()
        else:
            _debug_off()
        for loop, _ in loops:
            _adopt(loop)
        running = _get_running_loop()
        if running is not None:
            _adopt(running)


def uninstall() -> None:
    """Undo :func:`install`: hooks, loop handlers and factories, debug settings."""
    global _settings
    with _lock:
        if _settings is None:
            return
        _settings = None
        for loop, state in list(_loops.items()):
            with contextlib.suppress(Exception):  # a loop in a state this does not know
                _release(loop, state)
        _loops.clear()
        _unpatch_all()
        _debug_off()
