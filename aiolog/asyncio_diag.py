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

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from aiolog import _options
from aiolog._context import ORIGIN_TASK, TaskFactory, TaskRef, drive
from aiolog._executor import INTERNAL_THREADS
from aiolog._pitfalls import (
    _asyncio_filter,
    _Chained,
    _default_exception_handler,
    _get_ident,
    _get_running_loop,
    _logger,
    _task_context,
    _warn_unawaited_coroutine,
    _warnings_filter,
    _warnings_logger,
    exception_handler,
)

__all__ = ["exception_handler", "install", "installed", "uninstall"]


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
        raw = os.environ.get("AIOLOG_ASYNCIO_DEBUG", "").strip()
        debug = bool(raw) and _options.boolean("environment", "AIOLOG_ASYNCIO_DEBUG", raw)
    slow = slow_callback_duration
    if slow is not None:
        where = "asyncio_diag.install()"
        slow = _options.duration(where, "slow_callback_duration", slow, positive=True)
    return _Settings(bool(debug), slow)


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
