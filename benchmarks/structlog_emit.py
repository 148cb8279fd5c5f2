"""What a structlog call costs the event loop: through aiolog, and structlog's own ways.

Each setup runs in a fresh child process. Inside a task, bursts of
``log.info("request handled", user="ann", attempt=i, path="/items/42")`` (``await
log.ainfo(...)`` for the ``ainfo`` setup) are timed two ways:

``wall``
    :func:`time.perf_counter_ns` around the burst: what the calling task waits.
``loop cpu``
    :func:`time.thread_time_ns` of the loop's thread around the burst: the CPU the event
    loop spends (for ``ainfo`` that leaves out the worker thread's share, which the task
    still waits for).

Per setup, the median over bursts is taken in each child, and the median of the
children's values is reported; after the last call the records are counted in the output
file, so no setup wins by losing records. Setups:

``aiolog``
    ``aiolog.configure([JSON file sink], structlog=True)``: :mod:`aiolog.structlog`'s
    logger, the event dict rendered in the listener thread.
``aiolog-stdlib``
    structlog's stdlib integration (``structlog.stdlib.LoggerFactory`` and
    ``BoundLogger``, ``filter_by_level``) ending in :func:`aiolog.structlog.to_aiolog`,
    into the same aiolog pipeline.
``structlog-json``
    structlog alone, rendering on the caller: ``merge_contextvars``, ``add_log_level``,
    ``TimeStamper(fmt="iso", utc=True)``, ``JSONRenderer`` to a file
    (``WriteLoggerFactory``), the level filtered by ``make_filtering_bound_logger``.
``structlog-json-devnull``
    The same chain writing to ``os.devnull``: rendering without the write.
``structlog-ainfo``
    The same chain, called as ``await log.ainfo(...)``: structlog runs it in the
    default thread pool.

Usage::

    python benchmarks/structlog_emit.py            # 5 children per setup, ~1 min
    python benchmarks/structlog_emit.py --reps 3 --bursts 100 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETUPS = (
    "aiolog",
    "aiolog-stdlib",
    "structlog-json",
    "structlog-json-devnull",
    "structlog-ainfo",
)

ROOT = Path(__file__).resolve().parent.parent


def _setup(name: str, path: str) -> tuple[Any, Any]:
    """Configure logging for ``name``; return ``(logger, finish)``."""
    import structlog

    if name in ("aiolog", "aiolog-stdlib"):
        import aiolog
        import aiolog.structlog

        pipeline = aiolog.configure([f"file:{path}?format=json"], level="INFO", queue_size=100_000)
        if name == "aiolog":
            aiolog.structlog.configure_structlog()
        else:
            structlog.configure(
                processors=[structlog.stdlib.filter_by_level, aiolog.structlog.to_aiolog],
                logger_factory=structlog.stdlib.LoggerFactory(),
                wrapper_class=structlog.stdlib.BoundLogger,
                cache_logger_on_first_use=True,
            )
        return structlog.get_logger("bench"), lambda: pipeline.stop(30)

    target = os.devnull if name == "structlog-json-devnull" else path
    out = open(target, "w")  # noqa: SIM115 - closed by finish()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("bench"), out.close


async def _measure(name: str, log: Any, bursts: int, burst: int) -> dict[str, Any]:
    import structlog

    structlog.contextvars.bind_contextvars(request_id="r-1")
    wall: list[float] = []
    cpu: list[float] = []
    pc, tt = time.perf_counter_ns, time.thread_time_ns
    is_async = name == "structlog-ainfo"
    warmup = max(5, bursts // 10)
    i = 0
    for b in range(bursts + warmup):
        t0, c0 = pc(), tt()
        if is_async:
            for _ in range(burst):
                await log.ainfo("request handled", user="ann", attempt=i, path="/items/42")
                i += 1
        else:
            for _ in range(burst):
                log.info("request handled", user="ann", attempt=i, path="/items/42")
                i += 1
        t1, c1 = pc(), tt()
        if b >= warmup:
            wall.append((t1 - t0) / burst)
            cpu.append((c1 - c0) / burst)
        await asyncio.sleep(0.001)  # an application that logs while it works
    return {"wall_ns": statistics.median(wall), "cpu_ns": statistics.median(cpu), "calls": i}


def child(name: str, bursts: int, burst: int) -> dict[str, Any]:
    """Run one setup in this process; return its medians and the records delivered."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.jsonl")
        log, finish = _setup(name, path)
        gc.collect()
        gc.disable()
        result = asyncio.run(_measure(name, log, bursts, burst))
        gc.enable()
        finish()
        if name != "structlog-json-devnull":
            with open(path, "rb") as f:
                result["delivered"] = sum(1 for _ in f)
        else:
            result["delivered"] = result["calls"]
    result["setup"] = name
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="children per setup")
    parser.add_argument("--bursts", type=int, default=200, help="timed bursts per child")
    parser.add_argument("--burst", type=int, default=100, help="calls per burst")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), choices=SETUPS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.bursts, args.burst)))
        return 0

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.setups}
    for rep in range(args.reps):  # interleaved, so drifts in machine load hit every setup
        for name in args.setups:
            cmd = [sys.executable, __file__, "--child", name]
            cmd += ["--bursts", str(args.bursts), "--burst", str(args.burst)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout))
            print(f"rep {rep + 1}/{args.reps} {name}: {runs[name][-1]}", file=sys.stderr)

    rows = []
    for name, results in runs.items():
        rows.append(
            {
                "setup": name,
                "wall_ns": statistics.median(r["wall_ns"] for r in results),
                "cpu_ns": statistics.median(r["cpu_ns"] for r in results),
                "delivered": f"{min(r['delivered'] for r in results)}/{results[0]['calls']}",
            }
        )
    print(f"Python {sys.version.split()[0]}, {args.reps} children x {args.bursts} bursts")
    print(f"{'setup':<24} {'wall ns/call':>13} {'loop cpu ns/call':>17} {'delivered':>14}")
    for row in rows:
        print(
            f"{row['setup']:<24} {row['wall_ns']:>13,.0f} {row['cpu_ns']:>17,.0f}"
            f" {row['delivered']:>14}"
        )
    if args.json:
        args.json.write_text(json.dumps({"python": sys.version, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
