"""A tiny ASGI app for test_gunicorn: its lifespan and its one endpoint log through ``app``.

``GET /log?req=ID&n=N`` logs ``req ID rec K`` for K in 0..N-1 and answers with the
worker's pid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("app")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer lifespan events and ``GET /log`` requests, logging each."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                log.info("app startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log.info("app shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = parse_qs(scope["query_string"].decode())
    req = query["req"][0]
    for k in range(int(query["n"][0])):
        log.info("req %s rec %d", req, k)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
