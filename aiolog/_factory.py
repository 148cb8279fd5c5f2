"""A faster :class:`logging.LogRecord` that every formatter reads exactly like the stdlib's.

``LogRecord.__init__`` spends most of its time on things that never change between
calls: splitting the same source path into ``filename`` and ``module`` with
:mod:`os.path`, asking the kernel for the process id, and looking up the level name
through :func:`logging.getLevelName`. :class:`FastLogRecord` keeps those in small caches
and sets the same attributes, with the same values, in the same order, so
``%(module)s``, ``record.__dict__`` and every other way of reading a record see no
difference. It costs well under half as much (docs/design.md has the figures), which is
what lets the whole aiolog emit, context capture included, come in under a stdlib handler
that only appends to a list.

:func:`install` makes it the record factory when the factory is still the stdlib default
(a factory of the application's own is never replaced), and :func:`uninstall` puts the
default back. Copies and pickles of a :class:`FastLogRecord` are plain
:class:`logging.LogRecord` objects: a process that receives one need not import aiolog.

If the application turns off ``logging.logThreads``, ``logMultiprocessing``,
``logProcesses`` (or ``logAsyncioTasks`` on 3.12+), the record is built by the stdlib's
own ``__init__``, which honours them.
"""

from __future__ import annotations

import asyncio
import collections.abc
import copyreg
import logging
import os
import sys
import threading
import time
from typing import Any

from aiolog._record import CapturedRecord

__all__ = ["FastLogRecord", "install", "installed", "uninstall"]

_logging: Any = logging  # the module flags (logThreads...) are read on every record
_LogRecord = logging.LogRecord
_stdlib_init = logging.LogRecord.__init__
_Mapping = collections.abc.Mapping
_level_names: dict[int, str] = logging._levelToName
_get_level_name = logging.getLevelName
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_modules = sys.modules
_basename = os.path.basename
_splitext = os.path.splitext
_HAS_TASKNAME = sys.version_info >= (3, 12)
_NS_CLOCK = sys.version_info >= (3, 13)  # 3.13 derives the time fields from time_ns()
_time = time.time_ns if _NS_CLOCK else time.time
_start_time: Any = logging._startTime  # type: ignore[attr-defined]

#: pathname -> (filename, module). Bounded: code compiled at run time can have many names.
_paths: dict[str, tuple[str, str]] = {}
_MAX_PATHS = 4096

_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


def _split(pathname: str) -> tuple[str, str]:
    filename = _basename(pathname)
    parts = (filename, _splitext(filename)[0])
    if len(_paths) >= _MAX_PATHS:
        _paths.clear()
    _paths[pathname] = parts
    return parts


class FastLogRecord(CapturedRecord):
    """A :class:`logging.LogRecord` built with cached path, level and process lookups.

    Made by the record factory that :func:`install` sets; never instantiated directly by
    users. Attribute for attribute, value for value, it is what the stdlib would build.
    Its two slots (see :class:`aiolog._record.CapturedRecord`) let the listener take it
    over once the logger call that made it has returned, instead of copying it.
    """

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        log = _logging
        if not (
            log.logThreads
            and log.logMultiprocessing
            and log.logProcesses
            and (not _HAS_TASKNAME or log.logAsyncioTasks)
        ):
            _stdlib_init(self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
            return
        ct = _time()
        self.name = name
        self.msg = msg
        if args and len(args) == 1 and isinstance(args[0], _Mapping) and args[0]:
            args = args[0]
        self.args = args
        try:
            self.levelname = _level_names[level]
        except (KeyError, TypeError):
            self.levelname = _get_level_name(level)
        self.levelno = level
        self.pathname = pathname
        try:
            filename, module = _paths[pathname]
        except KeyError:
            try:
                filename, module = _split(pathname)
            except (TypeError, ValueError, AttributeError):
                filename, module = pathname, "Unknown module"
        except TypeError:  # unhashable: the stdlib's own error path
            filename, module = pathname, "Unknown module"
        self.filename = filename
        self.module = module
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func  # type: ignore[assignment]  # None, as in the stdlib
        if _NS_CLOCK:
            self.created = ct / 1e9
            msecs = (ct % 1_000_000_000) // 1_000_000 + 0.0
            if msecs == 999.0 and int(self.created) != ct // 1_000_000_000:
                msecs = 0.0
            self.msecs = msecs
            self.relativeCreated = (ct - _start_time) / 1e6
        else:
            self.created = ct
            self.msecs = int((ct - int(ct)) * 1000) + 0.0
            self.relativeCreated = (ct - _start_time) * 1000
        self.thread = _get_ident()
        self.threadName = _current_thread().name
        mp = _modules.get("multiprocessing")
        if mp is None:
            self.processName = "MainProcess"
        else:
            try:
                self.processName = mp.current_process().name
            except Exception:
                self.processName = "MainProcess"
        self.process = _pid
        if _HAS_TASKNAME:
            loop = _get_running_loop()
            task = _current_task(loop) if loop is not None else None
            self.taskName = task.get_name() if task is not None else None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Copies and pickles are plain LogRecords (the receiver need not import aiolog).
        reconstruct = copyreg._reconstructor  # type: ignore[attr-defined]
        return reconstruct, (_LogRecord, object, None), self.__dict__.copy()


def installed() -> bool:
    """True when :class:`FastLogRecord` is the record factory."""
    return logging.getLogRecordFactory() is FastLogRecord


def install() -> bool:
    """Make :class:`FastLogRecord` the record factory if the stdlib default is in place.

    Returns True when it is the factory afterwards. An application's own factory is left
    alone (it may add fields, and it knows best).
    """
    current = logging.getLogRecordFactory()
    if current is _LogRecord:
        logging.setLogRecordFactory(FastLogRecord)
        return True
    return current is FastLogRecord


def uninstall() -> None:
    """Put the stdlib default factory back, if :class:`FastLogRecord` is the factory."""
    if logging.getLogRecordFactory() is FastLogRecord:
        logging.setLogRecordFactory(_LogRecord)
