"""aiolog: logging for asyncio applications that never blocks the event loop.

The emit path (:class:`QueueHandler`) captures the asyncio context of each record and
hands it to a bounded queue; a background thread (:class:`QueueListener`) with its own
event loop writes the records to the sinks. :func:`configure` wires it all in one call::

    import aiolog
    aiolog.configure(["stderr", "file:logs/app.jsonl"])
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aiolog import _direct  # noqa: F401 - gives sinks attached to a logger their pipeline
from aiolog._config import Pipeline, configure, get_pipeline, shutdown
from aiolog._factory import FastLogRecord
from aiolog._listener import QueueListener
from aiolog._options import OptionError
from aiolog._queue import RecordQueue
from aiolog.dictconfig import QueueHandler
from aiolog.formatting import JSONFormatter, LogfmtFormatter, TextFormatter
from aiolog.sinks import Sink, sink

try:
    __version__ = version("aiolog-queue")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "FastLogRecord",
    "JSONFormatter",
    "LogfmtFormatter",
    "OptionError",
    "Pipeline",
    "QueueHandler",
    "QueueListener",
    "RecordQueue",
    "Sink",
    "TextFormatter",
    "__version__",
    "configure",
    "get_pipeline",
    "shutdown",
    "sink",
]
