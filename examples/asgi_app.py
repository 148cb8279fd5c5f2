"""A small ASGI app whose logs, and uvicorn's, go through aiolog to a JSON file and stderr.

Run it with the YAML logging config next to it (the paths are relative to the repository)::

    uvicorn examples.asgi_app:app --log-config examples/logging.yaml
    curl http://127.0.0.1:8000/items/42
    tail -f logs/app.jsonl

No aiolog call is needed for the standard library: ``--log-config`` hands the YAML to
:func:`logging.config.dictConfig`, which builds aiolog's queue handler and starts its
listener. uvicorn's access log (``uvicorn.access``), its error log (``uvicorn.error``) and
the app's own records (``app``) all leave the event loop through the same queue.

The app also logs through structlog, configured by :func:`aiolog.structlog.configure_structlog`:
those records share the sinks, the levels and the exit drain, and a value bound with
:func:`structlog.contextvars.bind_contextvars` (here ``request_id``) appears in every
record of the request, structlog's and the standard library's alike. Each record names the
asyncio task and coroutine that logged it (``task``, ``coro``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

import aiolog.structlog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

aiolog.structlog.configure_structlog()

log = logging.getLogger("app")
slog = structlog.get_logger("app.events")
_request_ids = itertools.count(1)


async def lookup(item: str) -> dict[str, Any]:
    """Pretend to fetch something, logging from a task of its own."""
    await asyncio.sleep(0)
    log.info("looked up item %s", item)
    return {"item": item, "tags": ["a", "b"]}


async def handle_request(scope: Scope, send: Send) -> None:
    """Answer every GET with a small text body; the path is echoed."""
    path = scope["path"]
    structlog.contextvars.bind_contextvars(request_id=f"r-{next(_request_ids)}")
    log.info("handling %s %s", scope["method"], path)
    found = await asyncio.create_task(lookup(path.rsplit("/", 1)[-1]), name=f"lookup:{path}")
    slog.info("request handled", path=path, found=found)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": f"ok {path}\n".encode()})


async def lifespan(receive: Receive, send: Send) -> None:
    """Log startup and shutdown; the exit drain writes the shutdown records too."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            log.info("app starting")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log.info("app stopping")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await handle_request(scope, send)
