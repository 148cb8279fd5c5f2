"""What the asyncio context capture costs on the emit path, for records logged from tasks.

Each variant runs in a fresh child process; inside a task, bursts of
``logger.info("msg %s %d", "x", i)`` go through an :class:`aiolog.QueueHandler` (no
listener: the queue is drained between bursts, outside the timing), and the median ns per
call over the bursts is taken in each child; the report is the median over children.

``capture``
    aiolog's emit path as shipped: task name, coroutine, ``contextvars`` snapshot, plus
    the asyncio hooks of :mod:`aiolog.asyncio_diag` installed (its task factory sets the
    ``to_thread`` origin in each task's context).
``capture-nohooks``
    The same emit path, the asyncio hooks not installed: the hooks' share.
``no-capture``
    The emit path with the capture switched off (the running-loop lookup answers
    ``None`` and the context snapshot is skipped), everything else equal: the capture's
    share is the difference with ``capture-nohooks``.

Usage::

    python benchmarks/context_capture.py              # 5 children per variant
    python benchmarks/context_capture.py --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import time

VARIANTS = ("capture", "capture-nohooks", "no-capture")


def _child(variant: str, bursts: int, size: int) -> float:
    import aiolog._handler as handler_module
    from aiolog import QueueHandler, asyncio_diag

    if variant == "no-capture":
        handler_module._get_running_loop = lambda: None  # type: ignore[assignment]
        handler_module._copy_context = lambda: None  # type: ignore[assignment]
    if variant == "capture":
        asyncio_diag.install()
    handler = QueueHandler(maxsize=10**9)
    log = logging.getLogger("bench.context")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)

    async def main() -> float:
        per_call: list[float] = []
        clock = time.perf_counter_ns
        for burst in range(bursts + 10):
            start = clock()
            for i in range(size):
                log.info("msg %s %d", "x", i)
            elapsed = clock() - start
            handler.queue.drain(10**9)
            if burst >= 10:  # warm-up bursts are not counted
                per_call.append(elapsed / size)
            await asyncio.sleep(0)
        return statistics.median(per_call)

    async def in_task() -> float:
        return await asyncio.create_task(main(), name="bench")

    return asyncio.run(in_task())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--bursts", type=int, default=200)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.bursts, args.size)))
        return
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(args.reps):
        order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]  # rotate to spread drift
        for variant in order:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    variant,
                    "--bursts",
                    str(args.bursts),
                    "--size",
                    str(args.size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[variant].append(json.loads(out.stdout))
    medians = {v: statistics.median(ns) for v, ns in results.items()}
    print(f"Python {sys.version.split()[0]}, {args.reps} children per variant, median ns/call")
    for variant, ns in medians.items():
        print(f"  {variant:16} {ns:8.0f}")
    capture = medians["capture-nohooks"] - medians["no-capture"]
    hooks = medians["capture"] - medians["capture-nohooks"]
    print(f"  context capture: {capture:+.0f} ns/call; asyncio hooks: {hooks:+.0f} ns/call")


if __name__ == "__main__":
    main()
