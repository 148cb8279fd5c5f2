"""One measurement of ``python -m aiolog bench``, in a child process of its own.

``python -m aiolog._bench_worker SETUP TEST ...`` installs one logging setup
(:class:`Setup`), runs one test on a fresh event loop and prints its figures as one JSON
line; :mod:`aiolog._bench` starts these children and summarises them. A fresh process per
run keeps one setup's threads, caches and garbage out of the next one's figures.

``emit``
    Inside a task of a running loop, ``logger.info("msg %s %d", "x", i)`` is timed call by
    call with :func:`time.perf_counter_ns`, after a warm-up; the median cost of an empty
    timed block is subtracted. Calls come in bursts separated by a short sleep, as in an
    application that logs while it works: a tight loop of calls that never yields
    measures throughput, which is another question.
``lag``
    A producer task logs at a fixed rate (a small burst every millisecond) while a ticker
    task sleeps 1 ms over and over and records how late it wakes up: the loop lag that
    logging causes. Percentiles count each tick once, so one long stall is one sample; the
    time-weighted figures weigh each tick by the wall time it covered, so a long stall
    counts as much as the ticks it replaced.

After the last record, the time until everything is written (``drain``) is measured and the
records in the output are counted (``delivered``), so speed is never bought with losses.
The repository's ``benchmarks.worker`` extends :class:`Setup` and the tests for the full
suite.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CORE_TESTS",
    "SETUPS",
    "TESTS",
    "ListHandler",
    "Setup",
    "StdlibJSONFormatter",
    "count_lines",
    "emit_test",
    "has_uvloop",
    "lag_test",
    "percentile",
    "run_worker",
    "weighted_mean",
    "weighted_percentile",
    "worker_exit",
    "worker_parser",
]

#: Setup name -> one-line description, in report order.
SETUPS: dict[str, str] = {
    "disabled": "logger level above INFO: the call returns after the level check",
    "floor": "a handler whose emit appends the record to a list",
    "stdlib-queue": "logging.handlers.QueueHandler + QueueListener, JSON lines to a FileHandler",
    "stdlib-queue-nolistener": "stdlib QueueHandler, no listener running (control)",
    "aiolog": 'aiolog.configure(["file:…/bench.jsonl"], level="INFO"): JSON file sink',
}

TESTS = ("emit", "lag")

LOGGER_NAME = "bench"

# ---------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of already sorted values; NaN if empty."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values))))
    return float(sorted_values[index])


def weighted_percentile(pairs: Sequence[tuple[float, float]], q: float) -> float:
    """Percentile ``q`` (0..1) of ``(value, weight)`` pairs sorted by value; NaN if empty.

    The first value at which the running total of the weights exceeds ``q`` of their sum:
    with lag samples weighted by the time they covered, the lag below which that share of
    the time was spent. With equal weights it is :func:`percentile`.
    """
    if not pairs:
        return float("nan")
    threshold = q * sum(weight for _, weight in pairs)
    total = 0.0
    for value, weight in pairs:
        total += weight
        if total > threshold:
            return float(value)
    return float(pairs[-1][0])


def weighted_mean(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean of the values of ``(value, weight)`` pairs, weighted; NaN if the weights sum to 0."""
    total = sum(weight for _, weight in pairs)
    if not total:
        return float("nan")
    return sum(value * weight for value, weight in pairs) / total


# ---------------------------------------------------------------------------- setups


class StdlibJSONFormatter(logging.Formatter):
    """Stdlib-only JSON lines, comparable to what aiolog's JSON sink writes."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "task": getattr(record, "taskName", None),
            "thread": record.threadName,
        }
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class ListHandler(logging.Handler):
    """Keep every record in a list: the cheapest handler there is (the ``floor`` setup)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def count_lines(path: str) -> int:
    """The lines in the file at ``path`` (0 if there is none): what a run delivered."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


class Setup:
    """Install one logging setup on the root logger; drain and count after the run.

    The setups of :data:`SETUPS`. A subclass (the repository's full suite) adds its own
    by overriding :meth:`install`, :meth:`drain` and :meth:`finish` for the names it knows
    and deferring to these for the rest.
    """

    def __init__(self, name: str, directory: str) -> None:
        self.name = name
        self.path = os.path.join(directory, "bench.jsonl")
        self.root = logging.getLogger()
        self.logger = logging.getLogger(LOGGER_NAME)
        #: Figures the setup adds to the run's result.
        self.extra: dict[str, Any] = {}
        self._handler: logging.Handler | None = None
        self._listener: logging.handlers.QueueListener | None = None
        self._pipeline: Any = None
        self._queue: queue.Queue[Any] | None = None
        #: The logging call and its format string: ``call(fmt, "x", i)``; when
        #: :attr:`is_async`, a coroutine function the tests await.
        self.call: Callable[..., Any] = self.logger.info
        self.fmt = "msg %s %d"
        self.is_async = False

    def install(self) -> None:
        """Attach the setup's handlers (or configure aiolog) before the test runs."""
        self.root.setLevel(logging.INFO)
        self.logger.setLevel(logging.NOTSET)
        if self.name == "disabled":
            self.logger.setLevel(logging.WARNING)
        elif self.name == "floor":
            self._handler = ListHandler()
            self.root.addHandler(self._handler)
        elif self.name in ("stdlib-queue", "stdlib-queue-nolistener"):
            self._queue = queue.Queue(-1)
            self._handler = logging.handlers.QueueHandler(self._queue)
            if self.name == "stdlib-queue":
                target = self.sink_handler()
                target.setFormatter(StdlibJSONFormatter())
                self._listener = logging.handlers.QueueListener(self._queue, target)
                self._listener.start()
            self.root.addHandler(self._handler)
        elif self.name == "aiolog":
            import aiolog

            self._pipeline = aiolog.configure([self.aiolog_sink()], level="INFO")
        else:
            raise ValueError(f"unknown setup {self.name!r} (known: {', '.join(SETUPS)})")

    def sink_handler(self) -> logging.Handler:
        """The handler behind the stdlib listener: a JSON lines file."""
        return logging.FileHandler(self.path, encoding="utf-8")

    def aiolog_sink(self) -> str | logging.Handler:
        """aiolog's sink: its own JSON lines file sink, default options."""
        return f"file:{self.path}"

    async def measure(self, test: Test, args: argparse.Namespace) -> dict[str, Any]:
        """Run ``test`` with this setup installed (a subclass may prepare the sink first)."""
        return await test(self, args)

    async def adrain(self) -> float:
        """:meth:`drain`, for setups that flush with a coroutine."""
        return self.drain()

    def drain(self) -> float:
        """Wait until everything logged is written; return how long that took (seconds)."""
        start = time.perf_counter()
        if isinstance(self._handler, logging.FileHandler):
            self._handler.flush()
        elif self._listener is not None:
            self._listener.stop()
        elif self._pipeline is not None and not self._pipeline.flush(timeout=120):
            self.extra["flush_timed_out"] = True
        return time.perf_counter() - start

    def finish(self) -> tuple[int | None, int | None]:
        """Tear down; return ``(delivered, lost)`` (``None`` where it does not apply)."""
        if self.name == "floor":
            assert isinstance(self._handler, ListHandler)
            return len(self._handler.records), 0
        if self.name == "stdlib-queue":
            assert self._listener is not None
            for handler in self._listener.handlers:
                handler.close()
            return count_lines(self.path), None
        if self.name == "stdlib-queue-nolistener":
            assert self._queue is not None
            self.extra["left_in_queue"] = self._queue.qsize()
            return None, None
        if self.name == "aiolog":
            stats = self._pipeline.stats()
            self.extra["stats"] = stats
            self._pipeline.stop(timeout=120)
            return count_lines(self.path), self.dropped(stats)
        return None, None

    @staticmethod
    def dropped(stats: dict[str, Any]) -> int:
        """What aiolog's counters report as dropped, at the queue and in every sink."""
        lost = int(stats["queue"]["dropped"] or 0)
        return lost + sum(int(s["dropped"]) for s in stats["sinks"].values())


#: One test: run it with a setup installed, return its figures.
Test = Callable[[Setup, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


# ---------------------------------------------------------------------------- the two tests


def _timer_overhead(n: int) -> int:
    """Median cost, in ns, of an empty timed block like the one around each call."""
    pc = time.perf_counter_ns
    samples = [0] * n
    for j in range(n):
        t0 = pc()
        samples[j] = pc() - t0
    return int(statistics.median(samples))


async def emit_test(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Time each call of ``args.n``, in bursts; the percentiles of the cost, then the drain."""
    call, fmt = setup.call, setup.fmt
    is_async = setup.is_async
    pc, tt = time.perf_counter_ns, time.thread_time_ns
    burst, pause = args.burst, args.pause
    for i in range(args.warmup):
        if is_async:
            await call(fmt, "x", i)
        else:
            call(fmt, "x", i)
        if i % burst == burst - 1:
            await asyncio.sleep(pause)
    overhead = _timer_overhead(max(args.n, 1000))
    n = args.n
    samples = [0] * n
    cpu: list[float] = []  # loop-thread CPU per call, one value per burst
    gc.collect()
    i = 0
    while i < n:
        end = min(i + burst, n)
        c0 = tt()
        if is_async:
            for j in range(i, end):
                t0 = pc()
                await call(fmt, "x", j)
                samples[j] = pc() - t0
        else:
            for j in range(i, end):
                t0 = pc()
                call(fmt, "x", j)
                samples[j] = pc() - t0
        cpu.append(max(0.0, (tt() - c0) / (end - i) - overhead))
        i = end
        if i < n:
            await asyncio.sleep(pause)
    drain = await setup.adrain()
    samples.sort()
    net = [max(0, s - overhead) for s in samples]
    return {
        "emitted": args.warmup + n,
        "timer_overhead_ns": overhead,
        "emit_median_ns": percentile(net, 0.5),
        "emit_p90_ns": percentile(net, 0.9),
        "emit_p99_ns": percentile(net, 0.99),
        "emit_max_ns": float(net[-1]) if net else float("nan"),
        "emit_mean_ns": statistics.fmean(net) if net else float("nan"),
        "emit_cpu_ns": statistics.median(cpu) if cpu else float("nan"),
        "drain_ms": drain * 1e3,
    }


async def lag_test(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Log at ``args.rate`` while a ticker measures how late its 1 ms sleeps wake up."""
    call, fmt = setup.call, setup.fmt
    is_async = setup.is_async
    perf = time.perf_counter
    rate, seconds = args.rate, args.seconds
    settle = min(0.1, seconds / 10)  # lag samples of the first moments are discarded
    ticks: list[tuple[float, float]] = []  # (when, how long the 1 ms sleep took) in seconds
    running = True

    async def ticker() -> None:
        while running:
            t0 = perf()
            await asyncio.sleep(0.001)
            t1 = perf()
            ticks.append((t1, t1 - t0))

    async def producer() -> int:
        emitted = 0
        start = perf()
        while True:
            elapsed = perf() - start
            if elapsed >= seconds:
                return emitted
            due = int(elapsed * rate)
            while emitted < due:
                if is_async:
                    await call(fmt, "x", emitted)
                else:
                    call(fmt, "x", emitted)
                emitted += 1
            await asyncio.sleep(0.001)

    tick = asyncio.ensure_future(ticker())
    start, cpu0 = perf(), time.thread_time()
    emitted = await producer()
    loop_cpu = time.thread_time() - cpu0
    running = False
    await tick
    drain = await setup.adrain()
    # (lag, interval) in ms, by lag: how late each tick woke, and the wall time it covered.
    timed = sorted(
        (max(0.0, interval - 0.001) * 1e3, interval * 1e3)
        for t, interval in ticks
        if t - start >= settle
    )
    ms = [lag for lag, _ in timed]
    return {
        "emitted": emitted,
        "rate_achieved": emitted / seconds,
        "ticks": len(ms),
        "lag_p50_ms": percentile(ms, 0.5),
        "lag_p99_ms": percentile(ms, 0.99),
        "lag_max_ms": ms[-1] if ms else float("nan"),
        "lag_tw_mean_ms": weighted_mean(timed),
        "lag_tw_p99_ms": weighted_percentile(timed, 0.99),
        "loop_cpu_us_per_record": loop_cpu * 1e6 / emitted if emitted else float("nan"),
        "drain_ms": drain * 1e3,
    }


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (``ru_maxrss``), None where unknown."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _new_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _run(coro: Coroutine[Any, Any, dict[str, Any]], loop_name: str) -> dict[str, Any]:
    loop = _new_loop_factory(loop_name)()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


#: The tests of :data:`TESTS`, by name.
CORE_TESTS: dict[str, Test] = {"emit": emit_test, "lag": lag_test}


def worker_parser(
    prog: str, setups: Iterable[str], tests: Iterable[str]
) -> argparse.ArgumentParser:
    """The command line of one child: ``SETUP TEST`` and the sizes of the run."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("setup", choices=list(setups))
    parser.add_argument("test", choices=list(tests))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.001)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--profile", action="store_true", help="cProfile the test")
    return parser


def run_worker(
    args: argparse.Namespace,
    make_setup: Callable[[str], Setup],
    tests: Mapping[str, Test] = CORE_TESTS,
) -> dict[str, Any]:
    """Run ``args.test`` with the setup ``make_setup(directory)`` in this process.

    The setup writes into a temporary directory that is gone when this returns; the
    result is the test's figures plus the counts, the loop, the peak memory and the
    setup's :attr:`Setup.extra`.
    """
    with tempfile.TemporaryDirectory(prefix="aiolog-bench-") as directory:
        setup = make_setup(directory)
        setup.install()
        test = tests[args.test]
        profile_text = None
        if args.profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            result = _run(setup.measure(test, args), args.loop)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            profile_text = out.getvalue()
        else:
            result = _run(setup.measure(test, args), args.loop)
        delivered, lost = setup.finish()
    result.update(setup=args.setup, test=args.test, delivered=delivered, lost=lost)
    result.update(loop=args.loop, peak_rss_mb=_peak_rss_mb())
    result.update(setup.extra)
    if profile_text is not None:
        result["profile"] = profile_text
    return result


def worker_exit(result: dict[str, Any]) -> None:
    """Print a child's result as one JSON line and end the process at once.

    A stdlib listener stuck on a dead or slow sink would hold the exit (``logging.shutdown``
    flushes its handlers, aiolog's exit drain waits): the result is out, so end here.
    """
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _args = worker_parser("python -m aiolog._bench_worker", SETUPS, TESTS).parse_args()
    worker_exit(run_worker(_args, lambda directory: Setup(_args.setup, directory)))
