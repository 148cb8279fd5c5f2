"""aiolog from :func:`logging.config.dictConfig`: one dict for every Python 3.10-3.13.

Most services configure logging with a dict or a YAML file (``uvicorn --log-config``,
Django's ``LOGGING``, gunicorn's ``logconfig_dict``). This dict routes everything through
aiolog, starts the listener by itself, and works unchanged on every supported Python::

    {
        "version": 1,
        "formatters": {"json": {"()": "aiolog.JSONFormatter"}},
        "handlers": {
            "file": {"()": "aiolog.sink", "url": "file:logs/app.jsonl", "formatter": "json"},
            "queue": {
                "class": "aiolog.QueueHandler",
                "handlers": ["file"],
                "listener": "aiolog.QueueListener",
                "maxsize": 10000,              # optional: the queue's bound
                "overflow": "drop_newest",     # optional: drop_newest, drop_oldest, block
            },
        },
        "root": {"level": "INFO", "handlers": ["queue"]},
    }

How each Python builds it
-------------------------
**3.12 and later** know this form: for a ``"class"`` that subclasses
:class:`logging.handlers.QueueHandler`, the configurator resolves ``handlers`` to handler
objects, makes a queue (an unbounded :class:`queue.Queue` unless ``queue`` says
otherwise), builds ``listener(queue, *handlers, respect_handler_level=...)``, then the
handler ``klass(queue)`` (releases from 3.12.4 on also pass the remaining keys, such as
``maxsize``, as keyword arguments: cpython gh-118868), and sets ``handler.listener``.
The stdlib never starts that listener (cpython #117827). :attr:`aiolog.QueueHandler.listener`
is a property whose setter does what is missing: it replaces the unbounded queue the
configurator made by a bounded :class:`aiolog.RecordQueue` (for the handler and the
listener alike), and starts the listener. Keys the early 3.12 releases drop (``maxsize``,
``overflow``, ``timeout``) are read back from the configurator (see
:func:`options_dropped_by_stdlib`), so they take effect there too.

**3.10 and 3.11** call ``aiolog.QueueHandler(handlers=[...], listener=..., queue=...,
respect_handler_level=..., maxsize=..., ...)`` with the keys as they are. The constructor
resolves handler names through :func:`logging.getHandlerByName`'s table, builds the queue
and the listener the way 3.12 would, and starts the listener. A handler named in
``handlers`` but not built yet (dictConfig builds handlers in alphabetical order) makes the
constructor raise ``ValueError`` caused by ``TypeError("target not configured yet")``:
the configurator's signal to retry the handler once the others exist.

The ``"()"`` form (``{"()": "aiolog.QueueHandler", "handlers": [...], ...}``) takes the
3.10/3.11 path on every version.

Keys of the queue handler
-------------------------
``handlers``
    Names of the handlers the listener writes to (required).
``listener``
    ``"aiolog.QueueListener"`` (the default), another listener class, or a factory; to
    tune the listener, ``{"()": "aiolog.dictconfig.listener", "max_batch": 256, ...}``.
``queue``
    Optional. ``{"()": "aiolog.RecordQueue", "maxsize": 5000, "overflow": "drop_oldest"}``
    works on every version; so does any queue object (``"ext://..."``) or a dotted name of a
    queue class. An unbounded :class:`queue.Queue` given to both sides (what 3.12+ make
    when there is no ``queue`` key) is replaced by a bounded ``RecordQueue``.
``maxsize``, ``overflow``, ``timeout``
    The bound, overflow policy and ``block`` timeout of the queue aiolog makes (default
    10 000, ``drop_newest``, 1.0 s). Work on every version; not together with ``queue``.
``respect_handler_level``
    As in the stdlib (default ``false``): skip records below a target handler's level.
``level``, ``formatter``, ``filters``
    Applied by dictConfig to the queue handler itself, as for any handler.

Unknown keys and bad values fail the whole ``dictConfig`` call with ``ValueError: Unable
to configure handler 'queue'``, caused by an error that names the key.

Exit and reconfiguration
------------------------
The listener drains into its handlers and stops before they are closed: an exit hook
stops every listener before :func:`logging.shutdown` runs, and ``logging.shutdown``
closes handlers newest first (the queue handler, whose ``close()`` stops its listener,
before the handlers it writes to). A SIGTERM with the default disposition would kill the
process without running either, so dictConfig-built handlers also install
:func:`drain_on_sigterm`. Calling ``dictConfig`` again closes the old handlers first and
attaches the new ones later; records logged in between are kept by the old handler and
handed to the new handler of the same name.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import logging.handlers
import queue as queue_module
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from aiolog import _factory, _options
from aiolog._exit import drain_on_sigterm
from aiolog._handler import (
    BaseQueueHandler,
    logging_lock_released,
    make_record_queue,
    queue_options,
)
from aiolog._listener import QueueListener
from aiolog._queue import Overflow, RecordQueue

__all__ = [
    "QUEUE_OPTIONS",
    "QueueHandler",
    "drain_on_sigterm",
    "listener",
    "options_dropped_by_stdlib",
    "restore_for_retry",
]

#: Keys of a queue handler's dict that set up the queue aiolog makes.
QUEUE_OPTIONS = ("maxsize", "max_bytes", "overflow", "timeout")

#: Keys the 3.12+ configurator consumes itself before building the handler.
_STDLIB_KEYS = frozenset({"queue", "listener", "handlers", "respect_handler_level"})

#: Every key of a queue handler's dict that the handler itself takes.
_HANDLER_KEYS = frozenset({*_STDLIB_KEYS, *QUEUE_OPTIONS, "level"})

ListenerFactory = Callable[..., logging.handlers.QueueListener]

_configurator = logging.config.BaseConfigurator({})


def listener(**options: Any) -> ListenerFactory:
    """A listener factory with options, for ``"listener": {"()": "aiolog.dictconfig.listener"}``.

    The options are those of :class:`aiolog.QueueListener` (``max_batch``, ``linger``,
    ``idle_after``, ``buffer_size``, ``buffer_bytes``, ``report_interval``, ``name``);
    they are checked here, so a typo fails the ``dictConfig`` call instead of the first
    record.
    """
    known = {
        "max_batch",
        "linger",
        "idle_after",
        "buffer_size",
        "buffer_bytes",
        "stall_timeout",
        "report_interval",
        "name",
    }
    where = "aiolog.dictconfig.listener()"
    _options.check_known(where, sorted(options), known)
    with _options.located(where):
        # Built once now, to check every value while dictConfig can still say which.
        QueueListener(queue_module.SimpleQueue(), **options)
    return functools.partial(QueueListener, **options)


def resolve_handlers(
    specs: Iterable[logging.Handler | str], where: str = "QueueHandler()"
) -> list[logging.Handler]:
    """The handler objects for ``specs``: handlers as they are, names looked up.

    :raises ValueError: for a name no handler has, caused by ``TypeError("target not
        configured yet")`` so that dictConfig retries once its other handlers exist.
    """
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Iterable):
        raise _options.OptionError(where, "handlers", specs, "a list of handler names")
    handlers: list[logging.Handler] = []
    for spec in specs:
        if isinstance(spec, logging.Handler):
            handlers.append(spec)
            continue
        if not isinstance(spec, str):
            raise _options.OptionError(where, "handlers", specs, "a list of handler names")
        handler = logging._handlers.get(spec)  # type: ignore[attr-defined]
        if handler is None:
            raise ValueError(
                f"aiolog.QueueHandler: no handler named {spec!r} (not in the "
                "configuration, or not configured yet)"
            ) from TypeError("target not configured yet")
        handlers.append(handler)
    return handlers


_LISTENER_EXPECTED = "a QueueListener class or factory: a dotted name, a '()' dict or an object"
_QUEUE_EXPECTED = "a queue: a dotted name of a queue class, a '()' dict or a queue object"


def _custom(spec: Mapping[str, Any], where: str, what: str, expected: str) -> Any:
    """Build ``{"()": factory, **kwargs}`` the way dictConfig builds user-defined objects."""
    if "()" not in spec:
        raise _options.OptionError(where, what, dict(spec), f"{expected} (a dict needs '()')")
    return _configurator.configure_custom(dict(spec))


def _resolve(name: str, where: str, what: str, expected: str) -> Any:
    try:
        return _configurator.resolve(name)
    except (ImportError, ValueError) as exc:
        raise _options.OptionError(where, what, name, f"{expected} (cannot import it)") from exc


def listener_factory(spec: Any, where: str = "QueueHandler()") -> ListenerFactory:
    """The callable that builds the listener: ``spec`` resolved as 3.12's dictConfig does.

    ``None`` means :class:`aiolog.QueueListener`; a string is a dotted name; a dict is built
    with its ``"()"`` factory and must return a callable; a class or callable is used as is.
    """
    if spec is None:
        return QueueListener
    given = spec
    if isinstance(spec, str):
        spec = _resolve(spec, where, "listener", _LISTENER_EXPECTED)
    elif isinstance(spec, Mapping):
        spec = _custom(spec, where, "listener", _LISTENER_EXPECTED)
    if isinstance(spec, type) and not issubclass(spec, logging.handlers.QueueListener):
        raise _options.OptionError(where, "listener", given, _LISTENER_EXPECTED)
    if not callable(spec):
        raise _options.OptionError(where, "listener", given, _LISTENER_EXPECTED)
    factory: ListenerFactory = spec
    return factory


def make_queue(spec: Any, where: str = "QueueHandler()") -> Any:
    """The queue object ``spec`` names, resolved as 3.12's dictConfig does.

    A dotted name is imported and called with no arguments; a dict is built with its
    ``"()"`` factory; an object with ``put_nowait`` is used as it is.
    """
    given = spec
    if isinstance(spec, str):
        factory = _resolve(spec, where, "queue", _QUEUE_EXPECTED)
        if not callable(factory):
            raise _options.OptionError(where, "queue", given, _QUEUE_EXPECTED)
        spec = factory()
    elif isinstance(spec, Mapping):
        spec = _custom(spec, where, "queue", _QUEUE_EXPECTED)
    elif isinstance(spec, type):
        spec = spec()
    if not callable(getattr(spec, "put_nowait", None)):
        raise _options.OptionError(where, "queue", given, f"{_QUEUE_EXPECTED} (with put_nowait)")
    return spec


def is_stdlib_default_queue(q: Any) -> bool:
    """True for an empty, unbounded :class:`queue.Queue`: what 3.12+ make by default."""
    return type(q) is queue_module.Queue and q.maxsize <= 0 and q.empty()


def options_dropped_by_stdlib(frame: FrameType | None) -> dict[str, Any]:
    """The handler keys the 3.12+ configurator read but did not pass to the handler.

    ``frame`` is the caller of the ``listener`` setter. When that is the configurator's
    ``_configure_queue_handler`` (checked by code object, not by name), its ``kwargs``
    hold every key of the handler's dict; releases before the gh-118868 fix build the
    handler with the queue alone and drop the rest, later ones pass the rest on. Anything
    else returns ``{}``.
    """
    configure = getattr(logging.config.DictConfigurator, "_configure_queue_handler", None)
    if frame is None or configure is None or frame.f_code is not configure.__code__:
        return {}
    kwargs = frame.f_locals.get("kwargs")
    if not isinstance(kwargs, Mapping):
        return {}
    return {key: value for key, value in kwargs.items() if key not in _STDLIB_KEYS}


def is_stdlib_default(frame: FrameType | None) -> bool:
    """True when ``frame`` is 3.12+ dictConfig building its default listener class.

    That is the stdlib's :class:`logging.handlers.QueueListener`, used when the dict has
    no ``listener`` key; aiolog's handler swaps in its own, as 3.10/3.11 would build.
    """
    configure = getattr(logging.config.DictConfigurator, "_configure_queue_handler", None)
    if frame is None or configure is None or frame.f_code is not configure.__code__:
        return False
    return frame.f_locals.get("lklass") is logging.handlers.QueueListener


def _dictconfig_frame(start: FrameType | None) -> FrameType | None:
    """The frame of dictConfig's ``configure_handler`` among ``start`` and its 7 callers."""
    configure = getattr(logging.config.DictConfigurator, "configure_handler", None)
    frame = start
    for _ in range(8):
        if frame is None or configure is None:
            return None
        if frame.f_code is configure.__code__:
            return frame
        frame = frame.f_back
    return None


def handler_where(default: str) -> str:
    """The ``<where>`` of an error in a handler dictConfig is building, else ``default``.

    ``dictConfig handler 'queue'``: the name is read from the configurator's frame
    (``configure``, which calls ``configure_handler`` for each name), found by code object.
    """
    frame = _dictconfig_frame(sys._getframe(1))
    if frame is None:
        return default
    caller = frame.f_back
    name = caller.f_locals.get("name") if caller is not None else None
    return f"dictConfig handler {name!r}" if isinstance(name, str) else "dictConfig handler"


def building_handler() -> bool:
    """True when the caller runs inside dictConfig's ``configure_handler``."""
    return _dictconfig_frame(sys._getframe(1)) is not None


def restore_for_retry() -> None:
    """Put back the keys dictConfig took from a handler's dict, so that it can retry it.

    ``configure_handler`` removes ``class``, ``formatter``, ``level``... from the dict before
    it calls the handler's constructor; when the constructor reports a target that is not
    built yet, dictConfig retries the same dict later, so it must be whole again (the
    stdlib restores it the same way for its own deferred handlers). Found on the stack by
    code object; does nothing when the caller is not dictConfig.
    """
    frame = _dictconfig_frame(sys._getframe(1))
    if frame is not None:
        config = frame.f_locals.get("config")
        original = frame.f_locals.get("config_copy")
        if isinstance(config, dict) and isinstance(original, dict):
            config.update(original)


def caller_frame() -> FrameType | None:
    """The frame that called the caller of this function (None where frames are hidden)."""
    try:
        return sys._getframe(2)
    except ValueError:  # pragma: no cover - a stack too shallow
        return None


#: Records logged to a closed, named QueueHandler (a dictConfig re-run closes the old
#: handlers before it attaches the new ones), kept for the next handler of the same name.
_orphans: dict[str, RecordQueue] = {}
_orphans_lock = threading.Lock()


class QueueHandler(BaseQueueHandler):
    """:class:`aiolog.QueueHandler`: the emit path, and what dictConfig needs of it.

    ``QueueHandler(queue)`` works like the stdlib class; without a queue the handler makes
    an :class:`aiolog.RecordQueue` with ``maxsize``, ``max_bytes``, ``overflow`` and
    ``timeout``. The emit path is :class:`aiolog._handler.BaseQueueHandler`'s; this class
    adds the stdlib's queue-handler form of :func:`logging.config.dictConfig` (see the
    module docstring): the ``handlers``, ``listener`` and ``respect_handler_level`` keys, a
    queue given by name or factory, the :attr:`listener` property that starts the listener
    3.12+ build and never start, and the hand-over of a named handler's records to its
    successor when dictConfig runs again.

    :param handlers: handlers (or names of handlers) to write to: the handler then builds
        its listener (with ``listener``, ``respect_handler_level``) and starts it. This is
        how :func:`logging.config.dictConfig` on 3.10/3.11, or the ``"()"`` form anywhere,
        builds the stdlib's queue-handler form.
    :param listener: with ``handlers``: the listener class or factory, or its dotted name
        (default :class:`aiolog.QueueListener`).
    :param respect_handler_level: with ``handlers``: passed to the listener.
    :param maxsize: bound in records of the queue the handler makes (default 200 000).
    :param max_bytes: its bound in estimated bytes (default 128 MiB).
    :param overflow: its overflow policy (default ``"drop_newest"``).
    :param timeout: the longest the ``"block"`` policy waits (default 5 s).
    :param level: the handler's level.
    """

    def __init__(
        self,
        queue: Any = None,
        *,
        handlers: Iterable[logging.Handler | str] | None = None,
        listener: Any = None,
        respect_handler_level: bool = False,
        maxsize: int | None = None,
        max_bytes: int | None = None,
        overflow: Overflow | None = None,
        timeout: float | None = None,
        level: int | str = logging.NOTSET,
        **unknown: Any,
    ) -> None:
        where = handler_where("QueueHandler()")
        _options.check_known(where, unknown, _HANDLER_KEYS)
        options = queue_options(where, maxsize, max_bytes, overflow, timeout)
        respect_handler_level = _options.boolean(
            where, "respect_handler_level", respect_handler_level
        )
        pending: dict[str, Any] = {}
        listener_obj: logging.handlers.QueueListener | None = None
        # Resolve everything before the handler exists: a target that is not built yet
        # must fail without side effects, for dictConfig to retry it later.
        targets = None
        if handlers is not None:
            try:
                targets = resolve_handlers(handlers, where)
            except ValueError as exc:
                if "not configured yet" in str(exc.__cause__):
                    restore_for_retry()
                raise
        if targets is None and listener is not None:
            raise ValueError("'listener' needs 'handlers': the handlers it should write to")
        if queue is None:
            queue = make_record_queue(options)
        else:
            if not callable(getattr(queue, "put_nowait", None)):
                queue = make_queue(queue, where)
            if options:
                if not is_stdlib_default_queue(queue):
                    raise ValueError(
                        f"{', '.join(options)} set up the queue the handler makes: give them "
                        f"to the queue instead ({type(queue).__name__} was given)"
                    )
                pending = options  # 3.13's dictConfig: replaced when the listener is set
        if targets is not None:
            factory = listener_factory(listener, where)
            listener_obj = factory(queue, *targets, respect_handler_level=respect_handler_level)
        super().__init__(queue, level=level)
        self._pending_options = pending
        self._retired = False
        if listener_obj is not None:
            self.listener = listener_obj

    @property
    def listener(self) -> logging.handlers.QueueListener | None:
        """The listener that drains this handler's queue, if one was attached.

        Setting an :class:`aiolog.QueueListener` starts it (a no-op when it runs already):
        :func:`logging.config.dictConfig` on 3.12+ sets this attribute and never starts
        the listener itself (cpython #117827). When the handler and the listener share an
        empty, unbounded :class:`queue.Queue` (what dictConfig makes when the config names
        no queue), a bounded :class:`aiolog.RecordQueue` replaces it on both sides.
        The stdlib's own :class:`logging.handlers.QueueListener`, which 3.12+ use when
        the dict names no listener, is replaced by an aiolog one (as 3.10/3.11 would
        build); other listener classes are stored and left to their owner to start, as
        in the stdlib. ``None`` detaches without stopping. Set by dictConfig, it also
        installs :func:`drain_on_sigterm`.
        """
        return self.__dict__.get("_listener")

    @listener.setter
    def listener(self, listener: logging.handlers.QueueListener | None) -> None:
        frame = caller_frame()
        if type(listener) is logging.handlers.QueueListener and is_stdlib_default(frame):
            # 3.12+ dictConfig with no "listener" key: aiolog's listener, as on 3.10/3.11.
            listener = QueueListener(
                listener.queue,
                *listener.handlers,
                respect_handler_level=listener.respect_handler_level,
            )
        if listener is None or not isinstance(listener, QueueListener):
            self.__dict__["_listener"] = listener
            return
        options = {**self.__dict__.get("_pending_options", {})}
        dropped = options_dropped_by_stdlib(frame)
        if dropped:
            where = handler_where("QueueHandler()")
            _options.check_known(where, dropped, QUEUE_OPTIONS)
            given = {key: value for key, value in dropped.items() if key not in options}
            options.update(queue_options(where, **given))
        if listener.queue is self.queue and is_stdlib_default_queue(self.queue):
            bounded = make_record_queue(options)
            self.queue = listener.queue = bounded
        elif options:
            raise ValueError(
                f"{', '.join(options)} set up the queue the handler makes: give them to "
                f"the queue instead ({type(self.queue).__name__} was given)"
            )
        self._pending_options = {}
        self.__dict__["_listener"] = listener
        with logging_lock_released():
            listener.start()
        if building_handler():
            drain_on_sigterm()
            _factory.install()

    def set_name(self, name: str) -> None:
        """Name the handler; records a closed handler of that name kept come to this one."""
        super().set_name(name)
        q = self.queue
        if name and isinstance(q, RecordQueue):
            with _orphans_lock:
                orphan = _orphans.pop(name, None)
            if orphan is not None and orphan is not q:
                orphan.forward(q)

    name = property(logging.Handler.get_name, set_name)

    def close(self) -> None:
        """Stop the attached listener (draining the queue), then close; see the base class.

        A named handler that a :func:`logging.config.dictConfig` re-run is replacing keeps
        what is still logged to it afterwards for its successor: dictConfig closes the old
        handlers before it attaches the new ones to the loggers, and a thread logging
        meanwhile must not lose records. The records wait in a new bounded queue until a
        handler of the same name is made (see :meth:`set_name`), which then writes them.
        Such a re-run is told from a plain ``logging.shutdown()`` by logging's table of
        named handlers, which dictConfig empties first.
        """
        listener = self.listener
        q = self.queue
        name = self.name
        handlers: Any = logging._handlers  # type: ignore[attr-defined]
        if (
            listener is None
            or not name
            or handlers.get(name) is self
            or self._retired
            or not isinstance(q, RecordQueue)
            or sys.is_finalizing()
        ):
            super().close()
            return
        self._retired = True
        holding = RecordQueue(q.maxsize, q.overflow, q.timeout, max_bytes=q.max_bytes)
        self.queue = holding  # later records wait here...
        # ...and so do those that raced past the swap. Forward before stopping: a record
        # put into the old queue after its listener's last drain would otherwise be
        # counted lost at stop.
        q.forward(holding)
        with logging_lock_released():
            listener.stop()
        with _orphans_lock:
            previous = _orphans.get(name)
            _orphans[name] = holding
        if previous is not None:
            previous.forward(holding)
        super().close()
