"""aiolog: logging for asyncio applications that never blocks the event loop."""
