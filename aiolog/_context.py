"""Emit-time context that asyncio does not hand out directly.

asyncio tells who is running only for tasks (:func:`asyncio.current_task`). A record logged
from a plain loop callback (``call_soon``, ``call_later``, a future's done callback) or from
an :func:`asyncio.to_thread` worker would otherwise carry no origin at all. These helpers are
called by :class:`aiolog.QueueHandler` only on those paths, so records logged from tasks pay
nothing for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import weakref
from types import FrameType
from typing import Any

__all__ = ["ORIGIN_TASK", "callable_name", "callback_name"]

#: A weak reference to the task that created the current context. aiolog's task factory
#: sets it in each task's context; :func:`asyncio.to_thread` copies the context into the
#: worker thread, so records logged there can name the task that asked for the work.
ORIGIN_TASK: contextvars.ContextVar[weakref.ref[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "aiolog_origin_task", default=None
)

_HANDLE_RUN = asyncio.events.Handle._run.__code__
_getframe = sys._getframe

# Frames that drive an event loop whose callbacks run without a Python frame of their own
# (uvloop's Handle is compiled): the callback's frame is the one just above these.
_LOOP_DRIVERS = {(asyncio.runners.run.__code__.co_filename, "run")}


def _drives_loop(code: Any) -> bool:
    return (code.co_filename, code.co_name) in _LOOP_DRIVERS or (
        code.co_name == "run" and "uvloop" in code.co_filename
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
    return getattr(code, "co_qualname", code.co_name)


def callback_name(depth: int = 2) -> str | None:
    """The qualified name of the loop callback running on this thread, or None.

    Walks up the stack from the caller. On asyncio's own loops the callback is found
    through the ``Handle._run`` frame that runs it. On loops whose handles have no Python
    frame (uvloop), it is the outermost Python frame above the ``asyncio.run`` /
    ``Runner.run`` / ``uvloop.run`` frame that drives the loop; a loop driven by a
    user's own ``run_forever()`` call gives None there.
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
        if _drives_loop(code):
            return _frame_qualname(child) if child is not None else None
        child = frame
        frame = frame.f_back
    return None
