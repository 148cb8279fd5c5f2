"""``python -m aiolog demo``: the same asyncio workload logged two ways, side by side.

About 200 tasks handle fake requests and log each one (with ``extra=`` fields; now and then
a warning or an exception with its traceback) while a ticker task measures event-loop lag:
it sleeps 1 ms over and over and records how late it wakes up.

1. **aiolog**: ``aiolog.configure(["stderr?level=WARNING", "file:…/demo.jsonl"])``. The
   loop only copies each record onto a queue; the listener thread formats and writes.
2. **blocking handler**: the usual setup, a :class:`logging.FileHandler` (plus a stderr
   handler for warnings) called on the loop itself, with a sleep of 1 ms in each ``emit``
   to stand for a slow disk or a network hop. Every task waits while any one task logs.

Both runs do the same work; the table compares loop lag, records written and wall time.
The warnings of both runs go to stderr as text lines (coloured on a terminal), so the
output reads the same whether stderr is a terminal, a pipe or a file. Everything else is
written to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["add_arguments", "main", "run"]

#: Mean pause between two requests of one task, in seconds (uniform in 0..2x).
MEAN_PAUSE = 0.1
#: Every Nth record is a warning / an exception with a traceback (the rest are INFO).
WARNING_EVERY = 1499
EXCEPTION_EVERY = 2003
#: How long the blocking handler's emit sleeps: the slow disk or network it stands for.
SLOW_EMIT = 0.001

_logger = logging.getLogger("demo.app")


class SlowFileHandler(logging.FileHandler):
    """A :class:`logging.FileHandler` that also sleeps 1 ms per record: a slow sink."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(SLOW_EMIT)  # the point of the comparison: I/O that takes its time
        super().emit(record)


@dataclass
class RunResult:
    """What one run measured."""

    name: str
    lags_ms: list[float] = field(default_factory=list)
    logged: int = 0
    written: int = 0
    wall: float = 0.0
    stats: dict[str, Any] | None = None

    def lag(self, q: float) -> float:
        """The ``q`` quantile (0..1, 1 = max) of the loop lag, in ms."""
        values = sorted(self.lags_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]

    def stalled(self, threshold_ms: float = 5.0) -> float:
        """Share of the wall time (%) lost in stalls of the loop longer than the threshold."""
        lost = sum(lag for lag in self.lags_ms if lag > threshold_ms) / 1e3
        return 100 * lost / self.wall if self.wall > 0 else float("nan")


class _RequestCount:
    def __init__(self) -> None:
        self.n = 0


class RequestFailed(Exception):
    """The exception the demo's fake requests raise now and then."""


def _fail(request_id: str) -> None:
    raise RequestFailed(f"upstream timed out for {request_id}")


async def _client(index: int, per_task: int, counter: _RequestCount, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    for k in range(per_task):
        await asyncio.sleep(rng.uniform(0, 2 * MEAN_PAUSE))
        counter.n += 1
        n = counter.n
        request_id = f"r{index:03d}-{k:04d}"
        fields = {
            "request_id": request_id,
            "client": index,
            "route": rng.choice(("/users", "/orders", "/search", "/health")),
            "duration_ms": round(rng.expovariate(1 / 20), 2),
        }
        if n % EXCEPTION_EVERY == 0:
            try:
                _fail(request_id)
            except RequestFailed:
                _logger.exception("request %s failed", request_id, extra=fields)
        elif n % WARNING_EVERY == 0:
            _logger.warning("request %s was slow", request_id, extra=fields)
        else:
            _logger.info("request %s handled", request_id, extra=fields)


async def _workload(tasks: int, per_task: int, seed: int, result: RunResult) -> None:
    """Run the clients while a ticker records the loop lag; fill ``result``."""
    loop = asyncio.get_running_loop()
    running = True

    async def ticker() -> None:
        while running:
            t0 = loop.time()
            await asyncio.sleep(0.001)
            result.lags_ms.append(max(0.0, (loop.time() - t0 - 0.001) * 1e3))

    counter = _RequestCount()
    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(_client(i, per_task, counter, seed) for i in range(tasks)))
    running = False
    await tick
    result.logged = counter.n


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _stderr_is_a_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _run_aiolog(directory: str, tasks: int, per_task: int, seed: int) -> RunResult:
    import aiolog

    path = os.path.join(directory, "aiolog.jsonl")
    result = RunResult("aiolog")
    # Text on stderr either way, as in the blocking run: not JSON there and text here.
    colors = "true" if _stderr_is_a_terminal() else "false"
    pipeline = aiolog.configure(
        [f"stderr?level=WARNING&format=text&colors={colors}", f"file:{path}"], level="INFO"
    )
    try:
        start = time.perf_counter()
        asyncio.run(_workload(tasks, per_task, seed, result))
        pipeline.flush(timeout=30)
        result.wall = time.perf_counter() - start
        result.stats = pipeline.stats()
    finally:
        pipeline.stop()
    result.written = _count_lines(path)
    return result


def _run_blocking(directory: str, tasks: int, per_task: int, seed: int) -> RunResult:
    from aiolog.formatting import JSONFormatter, TextFormatter

    path = os.path.join(directory, "blocking.jsonl")
    result = RunResult("blocking")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    file_handler = SlowFileHandler(path, encoding="utf-8")
    file_handler.setFormatter(JSONFormatter())
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(logging.WARNING)
    stderr_handler.setFormatter(TextFormatter(colors=_stderr_is_a_terminal()))
    root.handlers = [file_handler, stderr_handler]
    root.setLevel(logging.INFO)
    try:
        start = time.perf_counter()
        asyncio.run(_workload(tasks, per_task, seed, result))
        file_handler.flush()
        result.wall = time.perf_counter() - start
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        file_handler.close()
    result.written = _count_lines(path)
    return result


def _stats_summary(stats: dict[str, Any]) -> list[str]:
    q = stats["queue"]
    lines = [
        f"  queue: enqueued {q['enqueued']:,}, dropped {q['dropped']:,}, "
        f"high water {q['high_water']:,}"
    ]
    for name, s in stats["sinks"].items():
        shown = f"file:…/{os.path.basename(name)}" if name.startswith("file:") else name
        error = f", last error: {s['last_error']}" if s["last_error"] else ""
        lines.append(
            f"  sink {shown}: written {s['written']:,}, dropped {s['dropped']:,}, "
            f"errors {s['errors']:,}{error}"
        )
    listener = stats["listener"]
    lines.append(
        f"  listener: bad records {listener['bad_records']:,}, "
        f"internal records {listener['internal_records']:,}"
    )
    return lines


def format_report(ours: RunResult, theirs: RunResult, tasks: int, seconds: float) -> str:
    """The side-by-side table and aiolog's stats."""
    header = ("", "aiolog", f"blocking handler ({SLOW_EMIT * 1e3:g} ms/record)")
    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("loop lag p50 (ms)", lambda r: f"{r.lag(0.5):.2f}"),
        ("loop lag p99 (ms)", lambda r: f"{r.lag(0.99):.2f}"),
        ("loop lag max (ms)", lambda r: f"{r.lag(1.0):.2f}"),
        ("loop stalled > 5 ms (% of time)", lambda r: f"{r.stalled():.1f}"),
        ("records logged", lambda r: f"{r.logged:,}"),
        ("records written", lambda r: f"{r.written:,}"),
        ("wall time (s)", lambda r: f"{r.wall:.2f}"),
    ]
    table = [header, *((label, f(ours), f(theirs)) for label, f in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [
        f"aiolog demo: {tasks} tasks, {ours.logged:,} records per run "
        f"(about {tasks / MEAN_PAUSE:,.0f} records/s asked for, {seconds:g} s of work)",
        "",
    ]
    for row in table:
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}".rstrip()
        )
    if ours.stats is not None:
        lines += ["", "aiolog pipeline.stats():", *_stats_summary(ours.stats)]
    return "\n".join(lines)


def run(seconds: float = 2.5, tasks: int = 200, seed: int = 1) -> tuple[RunResult, RunResult]:
    """Run the workload with aiolog, then with the blocking handler; return both results."""
    per_task = max(1, round(seconds / MEAN_PAUSE))
    with tempfile.TemporaryDirectory(prefix="aiolog-demo-") as directory:
        ours = _run_aiolog(directory, tasks, per_task, seed)
        theirs = _run_blocking(directory, tasks, per_task, seed)
    return ours, theirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options."""
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.5,
        help="how long the aiolog run's workload lasts (default 2.5; the blocking run takes "
        "longer)",
    )
    parser.add_argument("--tasks", type=int, default=200, help="concurrent tasks (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the workload")


def main(args: argparse.Namespace) -> int:
    """Run the demo and print the report."""
    if args.seconds <= 0 or args.tasks < 1:
        print("--seconds must be positive and --tasks at least 1", file=sys.stderr)
        return 2
    print(
        f"Running {args.tasks} tasks for about {args.seconds:g} s with aiolog, then with a "
        f"blocking handler (warnings go to stderr)...",
        file=sys.stderr,
        flush=True,
    )
    ours, theirs = run(args.seconds, args.tasks, args.seed)
    print(format_report(ours, theirs, args.tasks, args.seconds))
    return 0
