"""A sink attached straight to a logger still never blocks: it gets a private pipeline.

:class:`aiolog.sinks.Sink` is a ``logging.Handler``, so it can be put on a logger without an
:class:`aiolog.QueueHandler` in front. Its :meth:`~aiolog.sinks.Sink.emit` then hands the
record to a queue handler and listener made for that sink alone on first use. The sink
module cannot import the handler and the listener (they import the sinks' base), so this
module, imported with :mod:`aiolog`, gives :class:`~aiolog.sinks.Sink` the two functions.
"""

from __future__ import annotations

import logging
import threading

from aiolog._handler import BaseQueueHandler
from aiolog._listener import QueueListener
from aiolog.sinks._base import Sink

__all__ = ["close_private_pipeline", "private_handler"]

_lock = threading.Lock()


def private_handler(sink: Sink) -> logging.Handler:
    """The private queue handler (with a running listener) of a directly attached sink."""
    handler = sink._direct
    if isinstance(handler, BaseQueueHandler):
        return handler
    with _lock:
        handler = sink._direct
        if isinstance(handler, BaseQueueHandler):
            return handler
        handler = BaseQueueHandler()
        listener = QueueListener(
            handler.queue,
            sink,
            respect_handler_level=False,
            name=f"aiolog-direct:{sink.display_name}",
        )
        listener.start()
        handler.listener = listener
        sink._direct = handler
        return handler


def close_private_pipeline(sink: Sink) -> None:
    """Stop the private listener of a directly attached sink (draining it), if it has one."""
    handler = sink._direct
    sink._direct = None
    if isinstance(handler, BaseQueueHandler):
        listener = handler.listener
        if listener is not None:
            listener.stop()


Sink.private_handler = private_handler
Sink.close_private_pipeline = close_private_pipeline
