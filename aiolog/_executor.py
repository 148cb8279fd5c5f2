"""A one-thread executor made of a daemon thread.

Blocking work of a sink (file writes, a plain ``logging.Handler``) runs here, never on the
listener's event loop, so one slow sink cannot stall the others. It differs from
:class:`concurrent.futures.ThreadPoolExecutor` in the ways that matter at exit:

* the thread is a daemon and is never joined at interpreter exit, so a sink that hangs
  forever cannot hang the process (the pool's threads are joined by ``threading._shutdown``);
* the thread is started by :meth:`start`, ahead of time, because Python 3.12+ refuses to
  start threads during interpreter shutdown, which is exactly when the exit drain runs;
* its thread is registered in :data:`INTERNAL_THREADS`, so records it logs are not fed back
  into the queue (see :mod:`aiolog._handler`).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["INTERNAL_THREADS", "DaemonExecutor"]

_T = TypeVar("_T")

#: Idents of the threads aiolog runs (listener loops and sink workers). Records logged on
#: them are counted and not enqueued, so a sink that logs cannot feed itself forever.
INTERNAL_THREADS: set[int] = set()

_STOP = object()


class DaemonExecutor(concurrent.futures.Executor):
    """Run submitted callables one at a time, in order, on one named daemon thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shutdown = False

    def start(self) -> None:
        """Start the worker thread now (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._shutdown = False
            self._work = queue.SimpleQueue()
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            thread.start()
            self._thread = thread

    def _run(self) -> None:
        ident = threading.get_ident()
        INTERNAL_THREADS.add(ident)
        try:
            while True:
                item = self._work.get()
                if item is _STOP:
                    return
                future, fn, args, kwargs = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                del item, future, fn, args, kwargs
        finally:
            INTERNAL_THREADS.discard(ident)

    def submit(
        self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[_T]:
        """Queue ``fn(*args, **kwargs)``; start the thread first if it is not running."""
        if self._shutdown:
            raise RuntimeError(f"executor {self.name!r} is shut down")
        self.start()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop after the queued work; ``wait`` joins the thread (never at exit: it may hang)."""
        if self._shutdown:
            return
        self._shutdown = True
        self._work.put(_STOP)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def after_fork(self) -> None:
        """Forget the parent's thread in a forked child; :meth:`start` makes a new one."""
        self._thread = None
        self._shutdown = False
        self._work = queue.SimpleQueue()
