"""Every way out of a process drains the listeners first.

A process can end in several ways, and each needs its own hook for what is still queued to
reach the sinks:

* **Interpreter exit** (``sys.exit``, the end of the main module): an :mod:`atexit` hook,
  registered when aiolog is imported, runs :func:`drain_all` before ``logging.shutdown``
  (registered earlier, so it runs later) closes the handlers.
* **SIGTERM with its default disposition**, which kills the process without running exit
  hooks: :func:`drain_on_sigterm` installs a handler that drains, then dies of the signal
  the default way (same exit status). A process forked from a configured parent that
  resets SIGTERM to its default afterwards (gunicorn's uvicorn worker does, and uvicorn
  re-raises the signal after its graceful shutdown) would lose its last records, so while
  the drain is wanted, ``signal.signal(SIGTERM, SIG_DFL)`` installs the draining handler
  instead (see :func:`_guarded_signal`).
* **multiprocessing children**, which end with ``os._exit`` and run no exit hook: a
  ``multiprocessing.util.Finalize`` registered in each child (fork and forkserver
  ``Process``, ``Pool`` workers) drains when the child's target returns; a ``Pool``
  terminated with SIGTERM drains through the handler above.
* An ``os.fork()`` child that calls ``os._exit`` itself skips all of these: call
  ``aiolog.shutdown()`` (or the listener's ``stop()``) before ``os._exit`` there.

A plain ``logging.Handler`` still stuck in ``emit()`` when the drain gives up holds its
lock, which ``logging.shutdown`` would wait for forever: it is taken off logging's list of
handlers to shut down (:func:`aiolog.sinks._adapter.forget_stuck_handlers`).

When records were lost, one line on stderr says which sinks lost how many, unless stderr
is itself a sink (its notices said it there).
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from aiolog import _listener
from aiolog._listener import QueueListener, listeners, stop_all
from aiolog.sinks import _adapter

__all__ = ["add_drainer", "drain_all", "drain_on_sigterm", "report_losses"]

#: Callables that stop a pipeline within the seconds they are given (configure's).
_drainers: list[Callable[[float], Any]] = []
#: Listeners whose losses were already reported on stderr.
_reported: weakref.WeakSet[QueueListener] = weakref.WeakSet()
_lock = threading.RLock()

_drain_timeout = 5.0
_sigterm_wanted = False
#: The thread running drain_all, if one is.
_draining_thread: int | None = None
#: A signal that arrived during a drain on the same thread, to die of once it is done.
_die_of: int | None = None
_original_signal = signal.signal
_monotonic = _listener._monotonic


def add_drainer(drainer: Callable[[float], Any]) -> None:
    """Run ``drainer(timeout)`` first when the process exits (configure's pipeline stop)."""
    if drainer not in _drainers:
        _drainers.append(drainer)


def drain_all(timeout: float) -> None:
    """Stop every pipeline and listener within ``timeout`` seconds; report any loss."""
    global _draining_thread
    with _lock:
        if _draining_thread is not None:  # re-entered by a signal handler: already on it
            return
        _draining_thread = threading.get_ident()
        try:
            running = listeners()
            deadline = _monotonic() + timeout
            for drainer in reversed(_drainers):
                drainer(max(0.0, deadline - _monotonic()))
            stop_all(max(0.0, deadline - _monotonic()))
            report_losses(running)
        finally:
            _draining_thread = None
            if _die_of is not None:  # a SIGTERM came during the drain: its turn now
                _die(_die_of)


def report_losses(stopped: list[QueueListener]) -> None:
    """Write one line on stderr naming what ``stopped`` listeners lost (once each).

    Listeners with a sink on stderr are left out: their notices said it there.
    """
    parts = []
    for listener in stopped:
        if listener in _reported or listener.running:
            continue
        lost = listener.lost()
        if not lost:
            continue
        _reported.add(listener)
        if listener.writes_to_stderr():
            continue
        for name, by_cause in lost.items():
            causes = ", ".join(f"{n} {cause.replace('_', ' ')}" for cause, n in by_cause.items())
            parts.append(f"{name!r}: {causes}")
    if not parts:
        return
    try:
        if sys.stderr is not None:
            sys.stderr.write(f"aiolog: records were lost: {'; '.join(parts)}\n")
            sys.stderr.flush()
    except Exception:  # pragma: no cover - stderr closed: nothing left to tell
        pass


def _at_exit() -> None:
    drain_all(_drain_timeout)
    # A plain handler still stuck in emit() past the drain would hang logging.shutdown().
    _adapter.forget_stuck_handlers()


# -- SIGTERM ----------------------------------------------------------------------------


def drain_on_sigterm(timeout: float = 5.0) -> bool:
    """Drain aiolog's listeners when a SIGTERM would kill the process outright.

    With SIGTERM's default disposition the process dies at once: no :mod:`atexit` hook
    runs, so records still queued are lost. That is also how uvicorn ends after a
    graceful shutdown: it restores the handler it found and raises the signal again.
    This installs, in place of the default disposition only, a handler that stops every
    running listener (each drains into its sinks, within ``timeout`` seconds) and then
    dies of the signal the default way, so the exit status is unchanged.

    From then on, in this process and in processes forked from it, setting SIGTERM back
    to ``SIG_DFL`` while a listener runs installs the same handler instead (a gunicorn
    worker resets the signals it inherited). A SIGTERM handler of the application's own
    is left alone. Returns True when the handler is (now) installed; does nothing off the
    main thread.
    """
    global _drain_timeout, _sigterm_wanted
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        return False
    _drain_timeout = timeout
    _sigterm_wanted = True
    if signal.signal is not _guarded_signal:
        signal.signal = _guarded_signal
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _drain_then_die:
            return True
        if current is not signal.SIG_DFL:
            return False
        _original_signal(signal.SIGTERM, _drain_then_die)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return False
    return True


def set_exit_timeout(timeout: float) -> None:
    """The seconds the exit drain (atexit, SIGTERM, multiprocessing) may take."""
    global _drain_timeout
    _drain_timeout = timeout


def _drain_then_die(signum: int, frame: FrameType | None) -> None:
    global _die_of
    if _draining_thread == threading.get_ident():
        _die_of = signum  # the drain this signal interrupted finishes first, then dies
        return
    try:
        drain_all(_drain_timeout)
    finally:
        _die(signum)


def _die(signum: int) -> None:
    """Die of ``signum`` the default way (the exit status says which signal)."""
    _original_signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


@functools.wraps(_original_signal)
def _guarded_signal(signalnum: Any, handler: Any) -> Any:
    """``signal.signal``, except that SIGTERM set to SIG_DFL drains first while wanted.

    Installed by :func:`drain_on_sigterm`. Without it, a process that resets SIGTERM to
    its default (a forked gunicorn worker, asyncio's ``remove_signal_handler``) would die
    of the signal with its records still queued.
    """
    if (
        handler is signal.SIG_DFL
        and signalnum == signal.SIGTERM
        and _sigterm_wanted
        and listeners()
    ):
        return _original_signal(signalnum, _drain_then_die)
    return _original_signal(signalnum, handler)


# -- multiprocessing ---------------------------------------------------------------------

_mp_token = type("_Token", (), {})()  # weakly referenced by multiprocessing's registry
_mp_armed_pid = 0
_mp_finalizer: Any = None


def arm_multiprocessing() -> None:
    """Make multiprocessing children drain when their target returns.

    multiprocessing ends its children with ``os._exit`` after running its own
    finalizers. In a child that is running its target already (it configured logging
    there), one is registered now; for children still to come, a callback that
    multiprocessing runs in every new child registers it there. Does nothing unless
    multiprocessing is imported.
    """
    global _mp_armed_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    if sys.modules["multiprocessing"].parent_process() is not None:
        _ensure_finalizer()
    if _mp_armed_pid != os.getpid():
        _mp_armed_pid = os.getpid()
        util.register_after_fork(_mp_token, _in_multiprocessing_child)


def _in_multiprocessing_child(token: object) -> None:
    _ensure_finalizer()


def _ensure_finalizer() -> None:
    """Register the draining finalizer in this process, unless it is registered already."""
    global _mp_finalizer
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    if _mp_finalizer is not None and _mp_finalizer.still_active():
        return  # in this process: a fork's bootstrap empties the registry it inherits
    # Higher priorities run first: before the queues' feeder threads are joined (-5).
    _mp_finalizer = util.Finalize(None, _multiprocessing_exit, exitpriority=100)


def _multiprocessing_exit() -> None:
    if listeners():
        drain_all(_drain_timeout)


atexit.register(_at_exit)
# In a forked child (its pid differs from the one armed): a multiprocessing child imports
# nothing new before its target runs, so arm it here, before multiprocessing's bootstrap.
os.register_at_fork(after_in_child=arm_multiprocessing)
_listener.START_HOOKS.append(arm_multiprocessing)
