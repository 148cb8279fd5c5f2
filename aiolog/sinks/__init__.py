"""aiolog's sinks: where the listener writes records."""

from aiolog.sinks._base import Sink

__all__ = ["Sink"]
