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
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from aiolog._exit import drain_on_sigterm
from aiolog._listener import QueueListener
from aiolog._queue import DEFAULT_MAX_BYTES, DEFAULT_MAXSIZE, DEFAULT_TIMEOUT, RecordQueue

__all__ = [
    "QUEUE_OPTIONS",
    "drain_on_sigterm",
    "listener",
    "options_dropped_by_stdlib",
    "restore_for_retry",
]

#: Keys of a queue handler's dict that set up the queue aiolog makes.
QUEUE_OPTIONS = ("maxsize", "max_bytes", "overflow", "timeout")

#: Keys the 3.12+ configurator consumes itself before building the handler.
_STDLIB_KEYS = frozenset({"queue", "listener", "handlers", "respect_handler_level"})

#: The default bound, overflow policy and block timeout, as in :class:`aiolog.RecordQueue`.
_QUEUE_DEFAULTS: dict[str, Any] = {
    "maxsize": DEFAULT_MAXSIZE,
    "max_bytes": DEFAULT_MAX_BYTES,
    "overflow": "drop_newest",
    "timeout": DEFAULT_TIMEOUT,
}

ListenerFactory = Callable[..., logging.handlers.QueueListener]

_configurator = logging.config.BaseConfigurator({})


def listener(**options: Any) -> ListenerFactory:
    """A listener factory with options, for ``"listener": {"()": "aiolog.dictconfig.listener"}``.

    The options are those of :class:`aiolog.QueueListener` (``max_batch``, ``linger``,
    ``idle_after``, ``buffer_size``, ``buffer_bytes``, ``report_interval``, ``name``);
    they are checked here, so a typo fails the ``dictConfig`` call instead of the first
    record.

    .. versionadded:: 0.1.0
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
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown QueueListener option(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    return functools.partial(QueueListener, **options)


def resolve_handlers(specs: Iterable[logging.Handler | str]) -> list[logging.Handler]:
    """The handler objects for ``specs``: handlers as they are, names looked up.

    :raises ValueError: for a name no handler has, caused by ``TypeError("target not
        configured yet")`` so that dictConfig retries once its other handlers exist.
    """
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Iterable):
        raise ValueError(f"'handlers' must be a list of handler names, not {specs!r}")
    handlers: list[logging.Handler] = []
    for spec in specs:
        if isinstance(spec, logging.Handler):
            handlers.append(spec)
            continue
        if not isinstance(spec, str):
            raise ValueError(f"'handlers' must hold handler names, not {spec!r}")
        handler = logging._handlers.get(spec)  # type: ignore[attr-defined]
        if handler is None:
            raise ValueError(
                f"aiolog.QueueHandler: no handler named {spec!r} (not in the "
                "configuration, or not configured yet)"
            ) from TypeError("target not configured yet")
        handlers.append(handler)
    return handlers


def _custom(spec: Mapping[str, Any], what: str) -> Any:
    """Build ``{"()": factory, **kwargs}`` the way dictConfig builds user-defined objects."""
    if "()" not in spec:
        raise ValueError(f"a {what} given as a dict needs a '()' key naming its factory")
    return _configurator.configure_custom(dict(spec))


def _resolve(name: str, what: str) -> Any:
    try:
        return _configurator.resolve(name)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot import the {what} {name!r}: {exc}") from exc


def listener_factory(spec: Any) -> ListenerFactory:
    """The callable that builds the listener: ``spec`` resolved as 3.12's dictConfig does.

    ``None`` means :class:`aiolog.QueueListener`; a string is a dotted name; a dict is built
    with its ``"()"`` factory and must return a callable; a class or callable is used as is.
    """
    if spec is None:
        return QueueListener
    if isinstance(spec, str):
        spec = _resolve(spec, "listener")
    elif isinstance(spec, Mapping):
        spec = _custom(spec, "listener")
    if isinstance(spec, type) and not issubclass(spec, logging.handlers.QueueListener):
        raise ValueError(f"listener {spec!r} is not a logging.handlers.QueueListener subclass")
    if not callable(spec):
        raise ValueError(f"listener must be a QueueListener class or factory, not {spec!r}")
    factory: ListenerFactory = spec
    return factory


def make_queue(spec: Any) -> Any:
    """The queue object ``spec`` names, resolved as 3.12's dictConfig does.

    A dotted name is imported and called with no arguments; a dict is built with its
    ``"()"`` factory; an object with ``put_nowait`` is used as it is.
    """
    if isinstance(spec, str):
        factory = _resolve(spec, "queue")
        if not callable(factory):
            raise ValueError(f"queue {spec!r} is not callable")
        spec = factory()
    elif isinstance(spec, Mapping):
        spec = _custom(spec, "queue")
    elif isinstance(spec, type):
        spec = spec()
    if not callable(getattr(spec, "put_nowait", None)):
        raise ValueError(f"{spec!r} is not a queue (it has no put_nowait method)")
    return spec


def record_queue(options: Mapping[str, Any]) -> RecordQueue:
    """A :class:`aiolog.RecordQueue` from ``maxsize``/``overflow``/``timeout`` options."""
    merged = {**_QUEUE_DEFAULTS, **options}
    return RecordQueue(
        merged["maxsize"], merged["overflow"], merged["timeout"], max_bytes=merged["max_bytes"]
    )


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
