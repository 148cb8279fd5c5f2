"""The smallest aiolog app: many tasks logging to stderr and a JSON file.

Run it: ``python examples/basic.py``; then look at ``logs/basic.jsonl``.
"""

from __future__ import annotations

import asyncio
import logging

import aiolog

log = logging.getLogger("example")


async def fetch(i: int) -> None:
    log.info("fetching item %d", i, extra={"item": i})
    await asyncio.sleep(0.01)
    if i == 3:
        try:
            raise ConnectionError("peer reset")
        except ConnectionError:
            log.exception("item %d failed", i)


async def main() -> None:
    tasks = [asyncio.create_task(fetch(i), name=f"fetch-{i}") for i in range(5)]
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    pipeline = aiolog.configure(["stderr", "file:logs/basic.jsonl"])
    asyncio.run(main())
    pipeline.flush()
    print(pipeline.stats())
