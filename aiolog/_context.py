"""Emit-time context that asyncio does not hand out directly.

asyncio tells who is running only for tasks (:func:`asyncio.current_task`). A record logged
from a plain loop callback (``call_soon``, ``call_later``, a future's done callback) or from
an :func:`asyncio.to_thread` worker would otherwise carry no origin at all. These helpers are
called by :class:`aiolog.QueueHandler` only on those paths, so records logged from tasks pay
nothing for them.

Three pieces live here:

* :func:`callback_name` names the loop callback running on this thread, by walking the
  stack (asyncio's ``Handle._run`` frame, or the frame above the one that drives a uvloop
  loop).
* :class:`TaskFactory` sets :data:`ORIGIN_TASK` in each new task's context, so that the
  context copied into an ``asyncio.to_thread`` worker still names the task that asked.
* :func:`log_about` logs a record *about* a task or a callback (the diagnostics of
  :mod:`aiolog.asyncio_diag`: a task whose exception was never retrieved, a slow callback)
  so that every handler, aiolog's included, sees that task or callback as the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import sys
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = [
    "ORIGIN_TASK",
    "TaskFactory",
    "TaskRef",
    "callable_name",
    "callback_name",
    "drive",
    "fill_context",
    "log_about",
]

#: Returns the task that created the current context, or None. :class:`TaskFactory` sets
#: it in each task's context; :func:`asyncio.to_thread` copies the context into the worker
#: thread, so records logged there can name the task that asked for the work. The value is
#: a weak reference (a :class:`weakref.ref`, or a :class:`TaskRef` where it must exist before
#: the task does), so a task's context does not keep the task alive.
ORIGIN_TASK: contextvars.ContextVar[Callable[[], asyncio.Task[Any] | None] | None] = (
    contextvars.ContextVar("_aiolog_origin_task", default=None)
)

_HANDLE_RUN = asyncio.events.Handle._run.__code__
_RUN_ONCE = asyncio.base_events.BaseEventLoop._run_once.__code__  # type: ignore[attr-defined]
_LOGGING_FILE = logging.__file__
_getframe = sys._getframe
_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_NEEDS_TASKNAME = sys.version_info < (3, 12)
_weakref = weakref.ref

# Frames that drive an event loop whose callbacks run without a Python frame of their own
# (uvloop's Handle is compiled): the callback's frame is the one just above these. Besides
# drive(), they are all named "run": asyncio.run, Runner.run, uvloop.run.
_RUNNERS_FILE = asyncio.runners.run.__code__.co_filename


def _drives_loop(code: Any) -> bool:
    return code is _DRIVE or (
        code.co_name == "run"
        and (code.co_filename == _RUNNERS_FILE or "uvloop" in code.co_filename)
    )


def callable_name(fn: object) -> str | None:
    """A readable qualified name for a callback: functions, methods, partials, objects."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    cls = type(fn)
    return f"{cls.__qualname__}.__call__" if callable(fn) else None


def _frame_qualname(frame: FrameType) -> str:
    code = frame.f_code
    qualname: str | None = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname is not None:
        return qualname
    if code.co_argcount and code.co_varnames[0] == "self":  # 3.10: a method, most likely
        owner = frame.f_locals.get("self")
        if owner is not None:
            return f"{type(owner).__qualname__}.{code.co_name}"
    return code.co_name


def callback_name(depth: int = 2) -> str | None:
    """The qualified name of the loop callback running on this thread, or None.

    Walks up the stack from the caller. On asyncio's own loops the callback is found
    through the ``Handle._run`` frame that runs it; a record the loop logs itself, outside
    any callback (``BaseEventLoop._run_once``), has none. On loops whose handles have no
    Python frame (uvloop), it is the outermost Python frame above the frame that drives the
    loop: ``asyncio.run``, ``Runner.run``, ``uvloop.run``, or :func:`drive` (through which
    :mod:`aiolog.asyncio_diag` runs uvloop loops, however they are started). A record that
    compiled loop code logs directly (its first Python frame is ``logging``'s) has none;
    so has a uvloop loop driven by a user's own ``run_forever()`` call without aiolog's
    hooks. A record logged through :func:`log_about` names the callback given there.
    """
    try:
        frame: FrameType | None = _getframe(depth)
    except ValueError:
        return None
    child: FrameType | None = None
    while frame is not None:
        code = frame.f_code
        if code is _HANDLE_RUN:
            handle = frame.f_locals.get("self")
            name = callable_name(getattr(handle, "_callback", None))
            if name is None and child is not None:
                name = _frame_qualname(child)
            return name
        if code is _LOG_ABOUT:
            named: str | None = frame.f_locals.get("callback")
            return named
        if code is _RUN_ONCE:
            return None
        if (code is _DRIVE or code.co_name == "run") and _drives_loop(code):
            if child is None or child.f_code.co_filename == _LOGGING_FILE:
                return None
            return _frame_qualname(child)
        child = frame
        frame = frame.f_back
    return None


def drive(run: Callable[[Any], Any], loop: Any) -> Any:
    """Call ``run(loop)`` (a loop's own ``run_forever``) in a frame that marks the driver.

    :func:`callback_name` takes the frame just above this one as the running callback's,
    which is how uvloop callbacks get a name however their loop is run.
    """
    return run(loop)


_DRIVE = drive.__code__
_THIS_FILE = _DRIVE.co_filename


# ---------------------------------------------------------------------------- to_thread origin


class TaskRef:
    """A weak reference to a task that can be made before the task exists (see bind)."""

    __slots__ = ("_ref",)

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self._ref: weakref.ref[asyncio.Task[Any]] | None = None
        if task is not None:
            self.bind(task)

    def bind(self, task: object) -> None:
        """Point at ``task`` (only an :class:`asyncio.Task` can be named)."""
        if isinstance(task, asyncio.Task):
            self._ref = weakref.ref(task)

    def __call__(self) -> asyncio.Task[Any] | None:
        ref = self._ref
        return ref() if ref is not None else None


_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)
_Task: Any = asyncio.Task  # its keywords differ by version (context=, eager_start=)


def _trim_source_traceback(task: object) -> None:
    """Drop this module's frame and ``create_task``'s, as asyncio does without a factory."""
    frames = getattr(task, "_source_traceback", None)
    if not frames:
        return
    while frames and frames[-1][0] == _THIS_FILE:
        del frames[-1]
    if frames and frames[-1][2] == "create_task" and "asyncio" in frames[-1][0]:
        del frames[-1]


class TaskFactory:
    """A loop task factory that sets :data:`ORIGIN_TASK` in each new task's context.

    It wraps the loop's previous factory (``inner``), if any, and is called the way each
    Python version and uvloop call factories: ``(loop, coro)`` on 3.10, plus ``context=``
    on 3.11+, plus ``eager_start=`` (uvloop on 3.13) or ``name=`` (CPython 3.13.3+); all
    keywords are passed on. The variable is set before the task is created, through a
    :class:`TaskRef` bound right after, so even an eager task's first step runs with it.
    A ``context=`` given by the caller gets the variable set in place (the caller's other
    variables are left alone); a context that is already entered is left untouched.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[..., asyncio.Future[Any]] | None = None) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"<aiolog.TaskFactory inner={self.inner!r}>"

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        inner = self.inner
        if inner is None and _TASK_TAKES_CONTEXT and not kwargs.get("eager_start"):
            # The common case, kept cheap: the first step runs later, so the variable can
            # be set in the task's context after the task exists.
            context: contextvars.Context | None = kwargs.pop("context", None)
            if context is None:
                context = _copy_context()
            task: asyncio.Task[Any] = _Task(coro, loop=loop, context=context, **kwargs)
            try:  # noqa: SIM105 - contextlib.suppress() would cost a context manager per task
                context.run(ORIGIN_TASK.set, _weakref(task))
            except RuntimeError:  # entered right now (the caller's own task's context)
                pass
            if task._source_traceback:  # type: ignore[attr-defined]
                _trim_source_traceback(task)
            return task
        return self._general(inner, loop, coro, kwargs)

    def _general(
        self,
        inner: Callable[..., asyncio.Future[Any]] | None,
        loop: asyncio.AbstractEventLoop,
        coro: Any,
        kwargs: dict[str, Any],
    ) -> asyncio.Future[Any]:
        """A wrapped factory, an eager task or Python 3.10: set the variable beforehand."""
        ref = TaskRef()
        context: contextvars.Context | None = kwargs.pop("context", None)
        if context is None:
            context = _copy_context()
            context.run(ORIGIN_TASK.set, ref)
            if inner is None and _TASK_TAKES_CONTEXT:
                task: asyncio.Future[Any] = _Task(coro, loop=loop, context=context, **kwargs)
            elif inner is None:  # Python 3.10: Task copies the current context itself
                task = context.run(_Task, coro, loop=loop, **kwargs)
            else:
                task = context.run(inner, loop, coro, **kwargs)
        else:
            # A context entered right now (the caller's own task's) is left as it is.
            with contextlib.suppress(RuntimeError):
                context.run(ORIGIN_TASK.set, ref)
            if inner is None:
                task = _Task(coro, loop=loop, context=context, **kwargs)
            else:
                task = inner(loop, coro, context=context, **kwargs)
        ref.bind(task)
        if inner is None:
            _trim_source_traceback(task)
        return task


# ---------------------------------------------------------------------------- log_about

if sys.version_info >= (3, 12):
    _swap_current_task: Callable[[Any, Any], Any] = asyncio.tasks._swap_current_task
else:

    def _swap_current_task(loop: Any, task: Any) -> Any:
        previous = asyncio.current_task(loop)
        if previous is not None:
            asyncio.tasks._leave_task(loop, previous)
        if task is not None:
            asyncio.tasks._enter_task(loop, task)
        return previous


def _coro_qualname(task: asyncio.Task[Any]) -> str | None:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    return name if isinstance(name, str) else None


def _handle_about(
    logger: logging.Logger,
    record: logging.LogRecord,
    task: asyncio.Task[Any] | None,
    callback: str | None,
) -> None:
    # callback_name() returns this frame's ``callback`` for records logged from here.
    loop = _get_running_loop()
    if loop is None:  # no loop on this thread: the handler reads ORIGIN_TASK instead
        logger.handle(record)
        return
    try:
        previous = _swap_current_task(loop, task)
    except Exception:  # a loop or asyncio version this does not fit: log as things are
        logger.handle(record)
        return
    try:
        logger.handle(record)
    finally:
        _swap_current_task(loop, previous)


_LOG_ABOUT = _handle_about.__code__


def log_about(
    logger: logging.Logger,
    record: logging.LogRecord,
    *,
    task: asyncio.Task[Any] | None = None,
    callback: str | None = None,
    context: contextvars.Context | None = None,
) -> None:
    """Handle ``record`` as a record about ``task``, or about the loop callback ``callback``.

    asyncio reports a task's lost exception from the task's ``__del__`` and a slow callback
    after it has run: whatever runs at that moment is not what the record is about. While
    the record is handled, ``task`` is made the loop's current task (or no task is current,
    for a callback), so every handler and filter that asks :func:`asyncio.current_task` —
    aiolog's emit path, Python 3.12's ``taskName`` — sees the subject, and
    :func:`callback_name` returns ``callback``. With no loop running on this thread (at
    shutdown, in another thread), :data:`ORIGIN_TASK` names the task instead.

    ``context`` is the subject's :mod:`contextvars` context (a copy is used), so the record
    carries the variables the task or callback ran with. The record's ``taskName``,
    ``aiolog_coro`` and ``aiolog_callback`` are set as well, for handlers that read them.
    """
    record.taskName = task.get_name() if task is not None else None
    record.aiolog_coro = _coro_qualname(task) if task is not None else None
    record.aiolog_callback = callback
    ctx = context.copy() if context is not None else _copy_context()
    ctx.run(ORIGIN_TASK.set, TaskRef(task) if task is not None else None)
    ctx.run(_handle_about, logger, record, task, callback)


def fill_context(d: dict[str, Any]) -> None:
    """Capture into a record's ``__dict__`` what :meth:`aiolog.QueueHandler.prepare` captures.

    The asyncio task (``taskName``), its coroutine (``aiolog_coro``), the loop callback
    (``aiolog_callback``) off the task path, and the :mod:`contextvars` snapshot
    (``aiolog_context``). :meth:`aiolog.QueueHandler.emit` captures the same, inline, into the
    tuple it queues: that is the hot path.
    """
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    callback = None
    if task is None:
        # Off the task path: a loop callback, or a thread (maybe an asyncio.to_thread
        # worker, whose copied context names the task that asked for the work).
        if loop is not None:
            callback = callback_name()
        else:
            ref = ORIGIN_TASK.get()
            task = ref() if ref is not None else None
    if task is not None:
        if _NEEDS_TASKNAME or d.get("taskName") is None:
            d["taskName"] = task.get_name()
        d["aiolog_coro"] = _coro_qualname(task)
    else:
        if _NEEDS_TASKNAME:
            d["taskName"] = None
        d["aiolog_coro"] = None
    d["aiolog_callback"] = callback
    d["aiolog_context"] = _copy_context()
