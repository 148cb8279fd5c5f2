"""Micro-benchmarks of the emit path: what logging costs the event loop, per setup.

Two measurements, each made in a fresh child process (``python -m aiolog._bench SETUP
TEST ...``, which prints one JSON object on stdout), interleaved over repetitions and
summarised by medians:

``emit``
    Inside a task of a running loop, ``logger.info("msg %s %d", "x", i)`` is timed call by
    call with :func:`time.perf_counter_ns`, after a warm-up; the median cost of an empty
    timed block is subtracted. Calls come in bursts (default 100) separated by a 1 ms
    sleep, as in an application that logs while it works: a tight loop of thousands of
    calls that never yields measures throughput, which is another question.
``lag``
    A producer task logs at a fixed rate (default 20 000 records/s, in a small burst every
    millisecond) while a ticker task sleeps 1 ms over and over and records how late it
    wakes up: the loop lag that logging causes. Percentiles count each tick once, so one
    long stall is one sample; the time-weighted figures weigh each tick by the wall time
    it covered, so a 100 ms stall counts a hundred times as much as a 1 ms tick.

After the last record, the time until everything is written (``drain``) is measured and the
records in the output are counted (``delivered``), so speed is never bought with losses.

:func:`run_suite` drives the children; :func:`format_tables` prints the summary. ``python
-m aiolog bench`` runs a ~30 s version of the suite that the repository's ``benchmarks``
package (the full suite, with recorded results) builds on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import logging.handlers
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "PRESETS",
    "SETUPS",
    "SuiteConfig",
    "add_arguments",
    "format_tables",
    "machine_info",
    "main",
    "run_child",
    "run_suite",
    "summarise",
]

#: Setup name -> one-line description, in report order.
SETUPS: dict[str, str] = {
    "disabled": "logger level above INFO: the call returns after the level check",
    "floor": "a handler whose emit appends the record to a list",
    "stdlib-queue": "logging.handlers.QueueHandler + QueueListener, JSON lines to a FileHandler",
    "stdlib-queue-nolistener": "stdlib QueueHandler, no listener running (control)",
    "aiolog": 'aiolog.configure(["file:…/bench.jsonl"], level="INFO"): JSON file sink',
    "stdlib-file": "logging.FileHandler on the loop thread, JSON lines (the same formatter)",
    "structlog-default": "structlog's default processors (ConsoleRenderer), printed to a file",
    "structlog-ainfo": "the same structlog config, called as `await log.ainfo(...)`",
    "loguru-enqueue": "loguru `logger.add(file, enqueue=True, serialize=True)`",
    "aiologger": "aiologger `Logger` + `AsyncFileHandler` (JSON formatter), each call awaited",
}

#: Setups that need a package which may be missing: setup -> module. A missing one is
#: skipped with a note, it never fails the suite.
PEERS: dict[str, str] = {
    "structlog-default": "structlog",
    "structlog-ainfo": "structlog",
    "loguru-enqueue": "loguru",
    "aiologger": "aiologger",
}

#: Setups whose logging call is a coroutine: the tests await it.
ASYNC_SETUPS = frozenset({"structlog-ainfo", "aiologger"})

TESTS = ("emit", "lag")

#: Scenario tests: ``dead`` logs :data:`DEAD_RECORDS` records into each sink of
#: :data:`STALL_SINKS`; ``throughput`` logs records as fast as it can and times the drain.
SCENARIO_TESTS = ("dead", "throughput")

#: Sinks behind the queue, for the scenarios: ``fast`` the JSON lines file, ``slow`` the
#: same file with 1 ms per write, ``dead`` a write that never returns, ``stalled-peer`` JSON
#: lines over TCP to a peer that accepts the connection and never reads from it.
SINKS = ("fast", "slow", "dead", "stalled-peer")

#: The sinks that stop taking records: the ``dead`` test runs with each of them.
STALL_SINKS = ("dead", "stalled-peer")

#: The setups the scenarios compare.
SCENARIO_SETUPS = ("stdlib-queue", "aiolog")

SLOW_WRITE_S = 0.001
DEAD_RECORDS = 1_000_000
#: The ``timeout`` given to ``pipeline.stop()``; the stdlib ``QueueListener.stop()`` has
#: none, so it runs in a thread that is given up on after :data:`STOP_CAP_S`.
STOP_TIMEOUT_S = 2.0
#: What "memory stays bounded" means in the targets table: aiolog's queue and sink buffer
#: hold 10 000 records each by default, far below this peak resident size.
RSS_BOUND_MB = 200
STOP_CAP_S = 4.0
#: The stalled peer's ``SO_RCVBUF``: small, so that its side of the connection holds a few
#: KB and the writer blocks once its own send buffer (a few MB on Linux) is full.
PEER_RCVBUF = 4096
#: Before a test with the stalled peer, records are logged at this rate (one a healthy sink
#: keeps up with) until the sink is stuck; the child fails if that takes longer than
#: :data:`FILL_TIMEOUT_S`.
FILL_RATE = 20_000
FILL_TIMEOUT_S = 30.0

LOGGER_NAME = "bench"


@dataclass
class SuiteConfig:
    """How much to measure. The presets in :data:`PRESETS` are the usual choices."""

    reps: int = 5
    #: Emit runs per setup per repetition: they are short, and a shared machine's noise
    #: (a busy neighbour on the same core) moves single runs by up to 1.6x.
    emit_rounds: int = 3
    emit_n: int = 20_000
    warmup: int = 2_000
    burst: int = 100
    #: The sleep between bursts. 1 ms, not less: libuv (uvloop) timers count whole
    #: milliseconds, and a shorter sleep there returns at once, which turns the bursts
    #: into one tight loop that starves the listener thread of the interpreter lock.
    pause: float = 0.001
    rate: int = 20_000
    seconds: float = 2.0
    loop: str = "asyncio"
    setups: list[str] = field(default_factory=lambda: list(SETUPS))
    timeout: float = 180.0
    #: Scenarios (:func:`run_scenarios`): repetitions of the emit and lag tests per sink,
    #: the sinks they run with, the sinks of the dead test and its records, records for
    #: the throughput test.
    scenario_reps: int = 2
    scenario_sinks: list[str] = field(default_factory=lambda: list(SINKS))
    dead_sinks: list[str] = field(default_factory=lambda: list(STALL_SINKS))
    dead_n: int = DEAD_RECORDS
    dead_reps: int = 1
    throughput_n: int = 100_000
    throughput_reps: int = 3
    stop_cap: float = STOP_CAP_S
    #: Back-to-back pairs (:func:`run_pairs`) per comparison the targets rest on.
    pair_reps: int = 0


#: The comparisons issue 6's targets rest on: ``(name, test, metric, reference, subject)``,
#: each side a ``(setup, sink)``. :func:`run_pairs` runs each as back-to-back pairs.
PAIRED: tuple[tuple[str, str, str, tuple[str, str], tuple[str, str]], ...] = (
    ("emit vs floor", "emit", "emit_median_ns", ("floor", "fast"), ("aiolog", "fast")),
    (
        "lag vs control",
        "lag",
        "lag_p99_ms",
        ("stdlib-queue-nolistener", "fast"),
        ("aiolog", "fast"),
    ),
    *(
        (f"emit {sink} vs fast", "emit", "emit_median_ns", ("aiolog", "fast"), ("aiolog", sink))
        for sink in SINKS
        if sink != "fast"
    ),
)


#: The setups of ``python -m aiolog bench``: the references, the stdlib pair and aiolog.
CORE_SETUPS = ["disabled", "floor", "stdlib-queue", "stdlib-queue-nolistener", "aiolog"]

#: ``full``: the recorded suite; ``user``: ``python -m aiolog bench`` (~30 s on 2 cores);
#: ``quick``: a smoke run.
PRESETS: dict[str, SuiteConfig] = {
    "full": SuiteConfig(
        reps=3, emit_rounds=2, emit_n=10_000, warmup=1_000, seconds=1.5, pair_reps=6
    ),
    "user": SuiteConfig(
        reps=3, emit_rounds=2, emit_n=10_000, warmup=1_000, seconds=1.0, setups=CORE_SETUPS
    ),
    "quick": SuiteConfig(
        reps=1,
        emit_rounds=1,
        emit_n=2_000,
        warmup=200,
        seconds=0.5,
        scenario_reps=0,
        dead_n=20_000,
        throughput_n=10_000,
        throughput_reps=1,
        stop_cap=1.0,
    ),
}


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


class _JSONFormatter(logging.Formatter):
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


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _SlowHandler(logging.FileHandler):
    """A JSON lines file handler whose every write takes 1 ms more (a slow disk or peer)."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(SLOW_WRITE_S)
        super().emit(record)


class _DeadHandler(logging.Handler):
    """A handler whose emit never returns (a peer that stopped reading, a hung mount)."""

    def __init__(self) -> None:
        super().__init__()
        self._never = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self._never.wait()


class _StalledPeer:
    """A TCP server on 127.0.0.1 that accepts connections and never reads from them.

    A log collector that hangs with its connections open. Its receive buffer is
    :data:`PEER_RCVBUF` bytes, set before ``listen()`` so that accepted sockets inherit
    it: once the writer's send buffer is full too, its writes block (or, for aiolog's TCP
    sink, wait until its write timeout).
    """

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_RCVBUF)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        host, port = self._server.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="stalled-peer", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # close() shut the listening socket
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._held.append(conn)

    def close(self) -> None:
        """Stop accepting and close every connection: a writer blocked on one gets an error."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, []
        # shutdown() wakes the accept() of the thread on Linux; some systems refuse it on a
        # listening socket, where the daemon thread is simply left waiting.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for conn in held:
            conn.close()


class _PeerSocketHandler(logging.Handler):
    """JSON lines over a blocking TCP socket, as a stdlib application writes to a collector.

    The stdlib has no such handler (``SocketHandler`` sends pickles, for logging's own
    receiver); this is the small one an application writes. Once the peer stops reading
    and the kernel buffers are full, ``emit`` blocks, and so does the listener thread that
    calls it. ``stalled`` is set when a write first finds the buffers full, so that a run
    can wait for the stall before it measures. When the peer closes the connection the
    handler stops writing (it never reconnects: the run is over by then).
    """

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__()
        self._sock: socket.socket | None = socket.create_connection(address)
        self.stalled = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = f"{self.format(record)}\n".encode()
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self.stalled.set()
                sock.sendall(data[sent:])
        except OSError:  # the peer closed the connection
            sock.close()
            self._sock = None
        except Exception:
            self.handleError(record)


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


class _Setup:
    """Install one logging setup on the root logger; drain and count after the run."""

    def __init__(
        self, name: str, directory: str, sink: str = "fast", queue_size: int | None = None
    ) -> None:
        self.name = name
        self.sink = sink
        self.queue_size = queue_size
        self.stop_cap = STOP_CAP_S
        self.path = os.path.join(directory, "bench.jsonl")
        self.root = logging.getLogger()
        self.logger = logging.getLogger(LOGGER_NAME)
        self.extra: dict[str, Any] = {}
        self._handler: logging.Handler | None = None
        self._listener: logging.handlers.QueueListener | None = None
        self._pipeline: Any = None
        self._queue: queue.Queue[Any] | None = None
        self._close: Callable[[], None] | None = None
        self._aclose: Callable[[], Coroutine[Any, Any, Any]] | None = None
        self._complete: Callable[[], None] | None = None
        self._peer: _StalledPeer | None = None
        #: The logging call and its format string: ``call(fmt, "x", i)``; a coroutine
        #: function for the setups in :data:`ASYNC_SETUPS`.
        self.call: Callable[..., Any] = self.logger.info
        self.fmt = "msg %s %d"

    def install(self) -> None:
        if self.sink == "stalled-peer":
            self._peer = _StalledPeer()
        self.root.setLevel(logging.INFO)
        self.logger.setLevel(logging.NOTSET)
        if self.name == "disabled":
            self.logger.setLevel(logging.WARNING)
        elif self.name == "floor":
            self._handler = _ListHandler()
            self.root.addHandler(self._handler)
        elif self.name in ("stdlib-queue", "stdlib-queue-nolistener"):
            self._queue = queue.Queue(-1)
            self._handler = logging.handlers.QueueHandler(self._queue)
            if self.name == "stdlib-queue":
                target = self._sink_handler()
                target.setFormatter(_JSONFormatter())
                self._listener = logging.handlers.QueueListener(self._queue, target)
                self._listener.start()
            self.root.addHandler(self._handler)
        elif self.name == "aiolog":
            import aiolog

            sink: str | logging.Handler = f"file:{self.path}"
            if self._peer is not None:  # aiolog's own NDJSON TCP sink, default options
                host, port = self._peer.address
                sink = f"tcp://{host}:{port}"
            elif self.sink != "fast":
                sink = self._sink_handler()
                sink.setFormatter(_JSONFormatter())
            if self.queue_size is None:
                self._pipeline = aiolog.configure([sink], level="INFO")
            else:
                # The throughput test: a queue and a sink buffer that hold the whole run,
                # so the drain is measured, not the drop policy.
                self._pipeline = aiolog.configure(
                    [sink],
                    level="INFO",
                    queue_size=self.queue_size,
                    sink_buffer=self.queue_size,
                    sink_buffer_bytes=self.queue_size * 1024,
                )
        elif self.name == "stdlib-file":
            self._handler = logging.FileHandler(self.path, encoding="utf-8")
            self._handler.setFormatter(_JSONFormatter())
            self.root.addHandler(self._handler)
        elif self.name in ("structlog-default", "structlog-ainfo"):
            import structlog

            out = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
            structlog.reset_defaults()
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
            log = structlog.get_logger(LOGGER_NAME)
            self.call = log.ainfo if self.name == "structlog-ainfo" else log.info
            self._close = out.close
        elif self.name == "loguru-enqueue":
            from loguru import logger as loguru_logger

            loguru_logger.remove()
            loguru_logger.add(self.path, enqueue=True, serialize=True, level="INFO")
            self.call = loguru_logger.info
            self.fmt = "msg {} {}"

            def complete() -> None:
                loguru_logger.complete()

            self._close = loguru_logger.remove
            self._complete = complete
        elif self.name == "aiologger":
            from aiologger import Logger
            from aiologger.formatters.json import JsonFormatter
            from aiologger.handlers.files import AsyncFileHandler
            from aiologger.levels import LogLevel

            alog = Logger(name=LOGGER_NAME, level=LogLevel.INFO)
            file_handler = AsyncFileHandler(filename=self.path)
            file_handler.formatter = JsonFormatter()
            alog.add_handler(file_handler)
            # aiologger takes one mapping of arguments, not positional ones.
            self.call = lambda fmt, s, i: alog.info(fmt, {"s": s, "i": i})
            self.fmt = "msg %(s)s %(i)d"
            self._aclose = alog.shutdown
        else:
            raise ValueError(f"unknown setup {self.name!r} (known: {', '.join(SETUPS)})")

    def _sink_handler(self) -> logging.Handler:
        if self.sink == "slow":
            return _SlowHandler(self.path, encoding="utf-8")
        if self.sink == "dead":
            return _DeadHandler()
        if self._peer is not None:
            return _PeerSocketHandler(self._peer.address)
        return logging.FileHandler(self.path, encoding="utf-8")

    def stalled(self) -> bool:
        """Whether the sink behind the queue has stopped taking records (the stalled peer).

        The stdlib handler says so itself; aiolog's sink buffer overflows (its sink stats
        count drops) once the sink has taken nothing for a while.
        """
        if self._listener is not None:
            handler = self._listener.handlers[0]
            assert isinstance(handler, _PeerSocketHandler)
            return handler.stalled.is_set()
        stats = self._pipeline.stats()
        return any(sink["dropped"] for sink in stats["sinks"].values())

    def stop(self) -> float:
        """Stop the listener as an application does at exit; return how long it took (s).

        aiolog: ``pipeline.stop(STOP_TIMEOUT_S)``. The stdlib ``QueueListener.stop()``
        takes no timeout: it is called in a thread, given up on after ``STOP_CAP_S``
        (``stop_returned`` false), and the process ends without waiting for it.
        """
        start = time.perf_counter()
        if self._pipeline is not None:
            self.extra["stop_returned"] = True
            self.extra["stop_ok"] = bool(self._pipeline.stop(timeout=STOP_TIMEOUT_S))
        elif self._listener is not None:
            stopper = threading.Thread(target=self._listener.stop, daemon=True)
            stopper.start()
            stopper.join(self.stop_cap)
            self.extra["stop_returned"] = not stopper.is_alive()
        elapsed = time.perf_counter() - start
        self.extra["stop_s"] = elapsed
        return elapsed

    async def adrain(self) -> float:
        """:meth:`drain`, for the setups that flush with a coroutine (aiologger)."""
        if self.sink != "fast":
            return self.stop()
        if self._aclose is None:
            return self.drain()
        start = time.perf_counter()
        await self._aclose()
        self._aclose = None
        return time.perf_counter() - start

    def drain(self) -> float:
        """Wait until everything logged is written; return how long that took (seconds)."""
        start = time.perf_counter()
        if self._complete is not None:
            self._complete()
        elif isinstance(self._handler, logging.FileHandler):
            self._handler.flush()
        elif self._listener is not None:
            self._listener.stop()
        elif self._pipeline is not None and not self._pipeline.flush(timeout=120):
            self.extra["flush_timed_out"] = True
        return time.perf_counter() - start

    def finish(self) -> tuple[int | None, int | None]:
        """Tear down; return ``(delivered, lost)`` (``None`` where it does not apply)."""
        try:
            return self._tear_down()
        finally:
            if self._peer is not None:
                self._peer.close()

    def _delivered(self) -> int | None:
        """The lines in the output file; ``None`` for the stalled peer, which reads nothing."""
        return None if self._peer is not None else _count_lines(self.path)

    def _tear_down(self) -> tuple[int | None, int | None]:
        if self.name == "floor":
            assert isinstance(self._handler, _ListHandler)
            return len(self._handler.records), 0
        if self.name == "stdlib-queue":
            assert self._listener is not None
            if self.sink != "fast":  # the listener may still be writing: count, leave it
                assert self._queue is not None
                self.extra["left_in_queue"] = self._queue.qsize()
                return self._delivered(), None
            for handler in self._listener.handlers:
                handler.close()
            return _count_lines(self.path), None
        if self.name == "stdlib-queue-nolistener":
            assert self._queue is not None
            self.extra["left_in_queue"] = self._queue.qsize()
            return None, None
        if self.name == "aiolog":
            pipeline = self._pipeline
            stats = pipeline.stats()
            self.extra["stats"] = stats
            if self.sink == "fast":
                pipeline.stop(timeout=120)
            lost = stats["queue"]["dropped"] or 0
            lost += sum(s["dropped"] for s in stats["sinks"].values())
            return self._delivered(), lost
        if self._close is not None:
            self._close()
        if isinstance(self._handler, logging.FileHandler):
            self.root.removeHandler(self._handler)
            self._handler.close()
        if self.name in ("stdlib-file", *PEERS):
            return _count_lines(self.path), None
        return None, None


# ---------------------------------------------------------------------------- the two tests


def _timer_overhead(n: int) -> int:
    """Median cost, in ns, of an empty timed block like the one around each call."""
    pc = time.perf_counter_ns
    samples = [0] * n
    for j in range(n):
        t0 = pc()
        samples[j] = pc() - t0
    return int(statistics.median(samples))


async def _emit_test(setup: _Setup, args: argparse.Namespace) -> dict[str, Any]:
    call, fmt = setup.call, setup.fmt
    is_async = setup.name in ASYNC_SETUPS
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


async def _lag_test(setup: _Setup, args: argparse.Namespace) -> dict[str, Any]:
    call, fmt = setup.call, setup.fmt
    is_async = setup.name in ASYNC_SETUPS
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


async def _dead_test(setup: _Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Log ``args.n`` records into a dead sink, in bursts; then stop the listener."""
    call, fmt = setup.call, setup.fmt
    pc, tt = time.perf_counter_ns, time.thread_time_ns
    burst = 1000
    wall: list[float] = []
    cpu: list[float] = []
    i = 0
    while i < args.n:
        end = min(i + burst, args.n)
        t0, c0 = pc(), tt()
        for j in range(i, end):
            call(fmt, "x", j)
        wall.append((pc() - t0) / (end - i))
        cpu.append((tt() - c0) / (end - i))
        i = end
        await asyncio.sleep(0)
    stop = setup.stop()
    return {
        "emitted": args.n,
        "emit_median_ns": statistics.median(wall),
        "emit_p99_ns": percentile(sorted(wall), 0.99),
        "emit_cpu_ns": statistics.median(cpu),
        "drain_ms": stop * 1e3,
    }


async def _throughput_test(setup: _Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Log ``args.n`` records as fast as possible; time from the first one to the drain."""
    call, fmt = setup.call, setup.fmt
    perf, cpu_all, cpu_loop = time.perf_counter, time.process_time, time.thread_time
    start, c0, l0 = perf(), cpu_all(), cpu_loop()
    for i in range(args.n):
        call(fmt, "x", i)
        if i % 1000 == 999:
            await asyncio.sleep(0)
    emitted_s, loop_cpu = perf() - start, cpu_loop() - l0
    drain = setup.drain()
    elapsed, cpu = perf() - start, cpu_all() - c0
    return {
        "emitted": args.n,
        "emit_s": emitted_s,
        "elapsed_s": elapsed,
        "records_per_s": args.n / elapsed,
        "cpu_us_per_record": cpu * 1e6 / args.n,
        "loop_cpu_us_per_record": loop_cpu * 1e6 / args.n,
        "other_cpu_us_per_record": (cpu - loop_cpu) * 1e6 / args.n,
        "drain_ms": drain * 1e3,
    }


async def _fill(setup: _Setup) -> int:
    """Log until the sink is stuck on the stalled peer; return how many records it took.

    The kernel takes a few MB into a connection's buffers before a peer that does not read
    blocks the writer: without the fill, a test of ten thousand records would measure a
    healthy connection. The records go at :data:`FILL_RATE`, which a healthy sink keeps up
    with, so aiolog's sink buffer overflows only once the sink is stuck.
    """
    burst = 100
    deadline = time.perf_counter() + FILL_TIMEOUT_S
    i = 0
    while not setup.stalled():
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"{setup.name}: the peer's buffers were not full after {i:,} records "
                f"({FILL_TIMEOUT_S:g} s)"
            )
        for _ in range(burst):
            setup.call(setup.fmt, "fill", i)
            i += 1
        await asyncio.sleep(burst / FILL_RATE)
    return i


async def _measure(
    setup: _Setup,
    test: Callable[[_Setup, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Run ``test``; with the stalled peer, once the peer's buffers are full."""
    if setup.sink == "stalled-peer":
        setup.extra["fill_records"] = await _fill(setup)
    return await test(setup, args)


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (``ru_maxrss``), None where unknown."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _has_uvloop() -> bool:
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


def run_worker(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one setup and one test in this process; return the result as a dict."""
    parser = argparse.ArgumentParser(prog="python -m aiolog._bench")
    parser.add_argument("setup", choices=list(SETUPS))
    parser.add_argument("test", choices=TESTS + SCENARIO_TESTS)
    parser.add_argument("--sink", choices=SINKS, default="fast", help="scenarios only")
    parser.add_argument("--queue-size", type=int, help="aiolog's queue bound")
    parser.add_argument("--stop-cap", type=float, default=STOP_CAP_S)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.001)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--profile", action="store_true", help="cProfile the emit test")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aiolog-bench-") as directory:
        if args.sink != "fast" and args.setup not in SCENARIO_SETUPS:
            parser.error(f"--sink {args.sink} works with {', '.join(SCENARIO_SETUPS)} only")
        setup = _Setup(args.setup, directory, args.sink, args.queue_size)
        setup.stop_cap = args.stop_cap
        setup.install()
        tests = {
            "emit": _emit_test,
            "lag": _lag_test,
            "dead": _dead_test,
            "throughput": _throughput_test,
        }
        test = tests[args.test]
        profile_text = None
        if args.profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            result = _run(_measure(setup, test, args), args.loop)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            profile_text = out.getvalue()
        else:
            result = _run(_measure(setup, test, args), args.loop)
        delivered, lost = setup.finish()
    result.update(setup=args.setup, test=args.test, delivered=delivered, lost=lost)
    result.update(sink=args.sink, loop=args.loop, peak_rss_mb=_peak_rss_mb())
    result.update(setup.extra)
    if profile_text is not None:
        result["profile"] = profile_text
    return result


# ---------------------------------------------------------------------------- the driver


def child_argv(setup: str, test: str, config: SuiteConfig) -> list[str]:
    """The command line of one child process."""
    return [
        sys.executable,
        "-m",
        "aiolog._bench",
        setup,
        test,
        f"--n={config.emit_n}",
        f"--warmup={config.warmup}",
        f"--burst={config.burst}",
        f"--pause={config.pause}",
        f"--rate={config.rate}",
        f"--seconds={config.seconds}",
        f"--loop={config.loop}",
        f"--stop-cap={config.stop_cap}",
    ]


def run_child(argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one worker process; return its JSON result (raise ``RuntimeError`` on failure)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker failed (exit {proc.returncode}): {' '.join(argv[2:])}\n"
            f"{proc.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.stderr.strip():
        result["stderr"] = proc.stderr.strip()[-2000:]
    return result


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _order(setups: list[str], rep: int) -> list[str]:
    """Rotate the setup order each repetition, so no setup always runs first or last."""
    k = rep % len(setups)
    return setups[k:] + setups[:k]


def missing_peers(setups: Sequence[str]) -> dict[str, str]:
    """The setups whose peer package is not installed: setup -> note."""
    import importlib.util

    return {
        name: f"skipped: {PEERS[name]} is not installed"
        for name in setups
        if name in PEERS and importlib.util.find_spec(PEERS[name]) is None
    }


def run_suite(config: SuiteConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every (setup, test) ``config.reps`` times, each in a fresh process.

    Returns ``{"config", "machine", "setups", "skipped", "runs", "summary"}``; ``summary``
    holds, per setup and test, the median of each timing over the repetitions and the totals
    of the counts (a loss in one repetition is never hidden by a median). Setups whose peer
    package is missing are left out and named in ``skipped``.
    """
    skipped = missing_peers(config.setups)
    if config.loop == "uvloop" and not _has_uvloop():
        skipped = dict.fromkeys(config.setups, "skipped: uvloop is not installed")
    config = SuiteConfig(
        **{**asdict(config), "setups": [s for s in config.setups if s not in skipped]}
    )
    runs: list[dict[str, Any]] = []
    load_before = _loadavg()
    started = time.perf_counter()
    # The emit runs of one repetition follow each other within seconds, so the setups are
    # compared under the same machine conditions (a busy neighbour slows a whole stretch).
    for rep in range(config.reps):
        for test in TESTS:
            rounds = config.emit_rounds if test == "emit" else 1
            for round_ in range(rounds):
                for setup in _order(config.setups, rep + round_):
                    if progress is not None:
                        progress(f"rep {rep + 1}/{config.reps}  {setup:<24} {test}")
                    result = run_child(child_argv(setup, test, config), config.timeout)
                    result.update(rep=rep, round=round_)
                    runs.append(result)
    return {
        "config": asdict(config),
        "machine": machine_info(config.loop),
        "setups": {name: SETUPS[name] for name in config.setups},
        "skipped": skipped,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "loadavg": {"before": load_before, "after": _loadavg()},
        "summary": summarise(runs, config.setups),
        "runs": runs,
    }


def run_scenarios(
    config: SuiteConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """aiolog against the stdlib queue pair when the sink is slow, dead or its peer stalled,
    and drain speed.

    ``sinks``: the emit and lag tests with each of ``config.scenario_sinks`` behind the
    queue (interleaved, ``scenario_reps`` times); ``dead``: ``dead_n`` records into each
    of ``config.dead_sinks``; ``throughput``: ``throughput_n`` records as fast as possible,
    timed to the end of the drain. Only the :data:`SCENARIO_SETUPS` in ``config.setups``
    run.
    """
    setups = [name for name in SCENARIO_SETUPS if name in config.setups]
    if config.loop == "uvloop" and not _has_uvloop():
        setups = []
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()

    def run(setup: str, test: str, extra: list[str], rep: int) -> None:
        if progress is not None:
            progress(f"scenario rep {rep + 1}  {setup:<14} {test} {' '.join(extra)}")
        result = run_child([*child_argv(setup, test, config), *extra], config.timeout)
        result.update(rep=rep)
        runs.append(result)

    for rep in range(config.scenario_reps):
        for test in TESTS:
            for k, sink in enumerate(config.scenario_sinks):
                for setup in _order(setups, rep + k):
                    run(setup, test, [f"--sink={sink}"], rep)
    for rep in range(config.dead_reps):
        for k, sink in enumerate(config.dead_sinks):
            for setup in _order(setups, rep + k):
                run(setup, "dead", [f"--sink={sink}", f"--n={config.dead_n}"], rep)
    for rep in range(config.throughput_reps):
        for setup in _order(setups, rep):
            size = f"--queue-size={config.throughput_n + 1000}"
            run(setup, "throughput", [f"--n={config.throughput_n}", size], rep)
    return {
        "setups": setups,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "summary": summarise_scenarios(runs),
        "runs": runs,
    }


def run_pairs(config: SuiteConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The comparisons of :data:`PAIRED`, as back-to-back pairs of runs.

    On a shared machine a busy neighbour slows whole stretches of seconds, and a single
    run lands in one by chance; runs of the suite that are compared sit seconds apart.
    Here the two sides of each comparison run one right after the other (the order
    alternating), ``config.pair_reps`` times, and the target uses the median of the
    per-pair ratios, which such stretches move far less. Returns, per comparison, the
    ratios, their median and the medians of each side.
    """
    out: dict[str, Any] = {}
    if config.pair_reps < 1 or (config.loop == "uvloop" and not _has_uvloop()):
        return out
    for name, test, metric, reference, subject in PAIRED:
        if reference[0] not in config.setups or subject[0] not in config.setups:
            continue
        values: dict[tuple[str, str], list[float]] = {reference: [], subject: []}
        ratios: list[float] = []
        for rep in range(config.pair_reps):
            got: dict[tuple[str, str], float] = {}
            for setup, sink in (reference, subject) if rep % 2 == 0 else (subject, reference):
                if progress is not None:
                    progress(f"pair {rep + 1}/{config.pair_reps}  {name}: {setup} ({sink})")
                argv = [*child_argv(setup, test, config), f"--sink={sink}"]
                got[(setup, sink)] = float(run_child(argv, config.timeout)[metric])
            values[reference].append(got[reference])
            values[subject].append(got[subject])
            if got[reference]:
                ratios.append(got[subject] / got[reference])
        out[name] = {
            "metric": metric,
            "ratios": ratios,
            "ratio": statistics.median(ratios) if ratios else None,
            "reference": statistics.median(values[reference]),
            "subject": statistics.median(values[subject]),
        }
    return out


_SCENARIO_KEYS = (
    "emit_median_ns",
    "emit_p99_ns",
    "emit_cpu_ns",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "lag_tw_mean_ms",
    "lag_tw_p99_ms",
    "rate_achieved",
    "stop_s",
    "peak_rss_mb",
    "records_per_s",
    "cpu_us_per_record",
    "loop_cpu_us_per_record",
    "other_cpu_us_per_record",
    "elapsed_s",
    "drain_ms",
)


def summarise_scenarios(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per ``"setup/test/sink"``: medians of the figures, totals of counts, max of memory."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(f"{r['setup']}/{r['test']}/{r['sink']}", []).append(r)
    summary: dict[str, Any] = {}
    for key, mine in groups.items():
        entry: dict[str, Any] = {"runs": len(mine), "emitted": sum(r["emitted"] for r in mine)}
        for name in _SCENARIO_KEYS:
            values = [r[name] for r in mine if r.get(name) is not None]
            entry[name] = statistics.median(values) if values else None
        rss = [r["peak_rss_mb"] for r in mine if r.get("peak_rss_mb") is not None]
        entry["peak_rss_mb_max"] = max(rss) if rss else None
        returned = [r["stop_returned"] for r in mine if "stop_returned" in r]
        entry["stop_returned"] = all(returned) if returned else None
        entry["stop_s_max"] = max((r["stop_s"] for r in mine if "stop_s" in r), default=None)
        for name in ("delivered", "lost"):
            values = [r[name] for r in mine]
            entry[name] = None if any(v is None for v in values) else sum(values)
        summary[key] = entry
    return summary


_TIMINGS = {
    "emit": (
        "emit_median_ns",
        "emit_p90_ns",
        "emit_p99_ns",
        "emit_max_ns",
        "emit_cpu_ns",
        "drain_ms",
    ),
    "lag": (
        "lag_p50_ms",
        "lag_p99_ms",
        "lag_max_ms",
        "lag_tw_mean_ms",
        "lag_tw_p99_ms",
        "rate_achieved",
        "loop_cpu_us_per_record",
        "drain_ms",
    ),
}


#: The setup every other one is compared with, repetition by repetition.
REFERENCE = "stdlib-queue"


def _paired_ratio(runs: Sequence[dict[str, Any]], setup: str) -> float | None:
    """Median over repetitions of (setup's emit median / the reference's, same repetition).

    Pairing within a repetition cancels the slow drifts of a shared machine that would
    otherwise move one setup's figures more than another's.
    """
    emit = {
        (r["setup"], r["rep"], r.get("round", 0)): r["emit_median_ns"]
        for r in runs
        if r["test"] == "emit"
    }
    ratios = [
        value / emit[(REFERENCE, rep, round_)]
        for (name, rep, round_), value in emit.items()
        if name == setup and emit.get((REFERENCE, rep, round_))
    ]
    return statistics.median(ratios) if ratios else None


def summarise(runs: Sequence[dict[str, Any]], setups: Sequence[str]) -> dict[str, Any]:
    """Medians of the timings and totals of the counts, per setup and test."""
    summary: dict[str, Any] = {}
    for setup in setups:
        per_test: dict[str, Any] = {}
        for test in TESTS:
            mine = [r for r in runs if r["setup"] == setup and r["test"] == test]
            if not mine:
                continue
            entry: dict[str, Any] = {"reps": len(mine)}
            for key in _TIMINGS[test]:
                values = [r[key] for r in mine if r.get(key) is not None]
                entry[key] = statistics.median(values) if values else None
            if test == "emit":
                entry["vs_reference"] = _paired_ratio(runs, setup)
                entry["emit_best_run_ns"] = min(r["emit_median_ns"] for r in mine)
            entry["emitted"] = sum(r["emitted"] for r in mine)
            for key in ("delivered", "lost"):
                values = [r[key] for r in mine]
                entry[key] = None if any(v is None for v in values) else sum(values)
            per_test[test] = entry
        summary[setup] = per_test
    return summary


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(loop: str = "asyncio") -> dict[str, Any]:
    """Platform, CPU model and count, Python version and build, aiolog version."""
    try:
        from importlib.metadata import version

        aiolog_version = version("aiolog-queue")
    except Exception:
        aiolog_version = "unknown"
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "aiolog": aiolog_version,
        "loop": loop,
    }


# ---------------------------------------------------------------------------- reporting


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _counts(entry: dict[str, Any]) -> tuple[str, str]:
    delivered = entry.get("delivered")
    shown = "-" if delivered is None else f"{delivered:,}/{entry['emitted']:,}"
    return shown, _fmt(entry.get("lost"))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    out = []
    for row in [list(header), *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def emit_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the emit table: setup, median, p90, p99 (ns), delivered, lost, drain."""
    rows = []
    for setup, tests in summary.items():
        e = tests.get("emit")
        if e is None:
            continue
        delivered, lost = _counts(e)
        rows.append(
            [
                setup,
                _fmt(e["emit_median_ns"]),
                _fmt(e.get("emit_best_run_ns")),
                _fmt(e["emit_p90_ns"]),
                _fmt(e["emit_p99_ns"]),
                _fmt(e.get("emit_cpu_ns")),
                "-" if e.get("vs_reference") is None else f"{e['vs_reference']:.2f}x",
                delivered,
                lost,
                _fmt(e["drain_ms"], 1),
            ]
        )
    return rows


def lag_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the lag table: setup, lag p50/p99/max and time-weighted mean/p99 (ms),
    rate, loop CPU per record, delivered, lost, drain.
    """
    rows = []
    for setup, tests in summary.items():
        e = tests.get("lag")
        if e is None:
            continue
        delivered, lost = _counts(e)
        rows.append(
            [
                setup,
                _fmt(e["lag_p50_ms"], 3),
                _fmt(e["lag_p99_ms"], 3),
                _fmt(e["lag_max_ms"], 2),
                _fmt(e.get("lag_tw_mean_ms"), 3),
                _fmt(e.get("lag_tw_p99_ms"), 3),
                _fmt(e["rate_achieved"]),
                _fmt(e.get("loop_cpu_us_per_record"), 1),
                delivered,
                lost,
                _fmt(e["drain_ms"], 1),
            ]
        )
    return rows


EMIT_HEADER = (
    "setup",
    "emit median ns",
    "best run",
    "p90 ns",
    "p99 ns",
    "loop CPU ns",
    f"vs {REFERENCE}",
    "delivered",
    "lost",
    "drain ms",
)
LAG_HEADER = (
    "setup",
    "lag p50 ms",
    "p99 ms",
    "max ms",
    "tw mean ms",
    "tw p99 ms",
    "records/s",
    "loop CPU µs/rec",
    "delivered",
    "lost",
    "drain ms",
)


def format_tables(results: dict[str, Any], markdown: bool = False) -> str:
    """The two summary tables (emit cost, loop lag), as text or Markdown."""
    summary = results["summary"]
    config = results["config"]
    reps = config["reps"]
    runs = reps * config.get("emit_rounds", 1)
    emit_title = (
        f"Emit cost on the loop thread: {config['emit_n']:,} timed calls per run "
        f"(bursts of {config['burst']}), median of {runs} run(s)"
    )
    lag_title = (
        f"Loop lag while logging {config['rate']:,} records/s for {config['seconds']:g} s, "
        f"median of {reps} run(s); tw: time-weighted"
    )
    if markdown:
        emit_title, lag_title = f"### {emit_title}", f"### {lag_title}"
    parts = [
        emit_title,
        "",
        _table(EMIT_HEADER, emit_rows(summary), markdown),
        "",
        lag_title,
        "",
        _table(LAG_HEADER, lag_rows(summary), markdown),
    ]
    return "\n".join(parts)


def _scenario(summary: dict[str, Any], setup: str, test: str, sink: str) -> dict[str, Any]:
    entry: dict[str, Any] = summary.get(f"{setup}/{test}/{sink}", {})
    return entry


def _stop_cell(entry: dict[str, Any]) -> str:
    if entry.get("stop_s_max") is None:
        return "-"
    shown = f"{entry['stop_s_max']:.2f}"
    return shown if entry.get("stop_returned") else f"> {shown} (blocked)"


def format_scenarios(scenarios: dict[str, Any], markdown: bool = False) -> str:
    """The scenario tables: slow, dead and stalled sinks, the stalled ones at volume, drain
    throughput.
    """
    summary = scenarios["summary"]
    setups = scenarios["setups"]
    parts: list[str] = []

    def title(text: str) -> None:
        parts.extend([f"### {text}" if markdown else text, ""])

    rows = []
    for sink in SINKS:
        for setup in setups:
            e, lag = _scenario(summary, setup, "emit", sink), _scenario(summary, setup, "lag", sink)
            if not e and not lag:
                continue
            delivered, lost = _counts(e) if e else ("-", "-")
            rows.append(
                [
                    f"{setup} / {sink}",
                    _fmt(e.get("emit_median_ns")),
                    _fmt(e.get("emit_cpu_ns")),
                    _fmt(lag.get("lag_p99_ms"), 3),
                    _fmt(lag.get("lag_tw_p99_ms"), 3),
                    _fmt(lag.get("rate_achieved")),
                    _stop_cell(e),
                    _stop_cell(lag),
                    _fmt(max(e.get("peak_rss_mb_max") or 0, lag.get("peak_rss_mb_max") or 0), 1),
                    delivered,
                    lost,
                ]
            )
    if rows:
        title(
            f"Slow, dead and stalled sinks: emit cost and loop lag with each sink behind the "
            f"queue (fast: JSON file; slow: {SLOW_WRITE_S * 1e3:g} ms per write; dead: never "
            "returns; stalled-peer: JSON lines over TCP to a peer that stops reading), "
            "median of the runs"
        )
        header: tuple[str, ...] = (
            "setup / sink",
            "emit ns",
            "loop CPU ns",
            "lag p99 ms",
            "lag tw p99 ms",
            "records/s",
            "stop s (emit run)",
            "stop s (lag run)",
            "peak RSS MiB",
            "delivered (emit)",
            "lost",
        )
        parts += [_table(header, rows, markdown), ""]

    rows = []
    dead = [
        (sink, setup, _scenario(summary, setup, "dead", sink))
        for sink in STALL_SINKS
        for setup in setups
    ]
    for sink, setup, e in dead:
        if not e:
            continue
        delivered, lost = _counts(e)
        rows.append(
            [
                f"{setup} / {sink}",
                _fmt(e.get("emit_median_ns")),
                _fmt(e.get("emit_cpu_ns")),
                _fmt(e.get("peak_rss_mb_max"), 1),
                _stop_cell(e),
                delivered,
                lost,
            ]
        )
    if rows:
        n = max(e.get("emitted", 0) // max(e.get("runs", 1), 1) for _, _, e in dead)
        title(
            f"Stalled sinks at volume: {n:,} records into a sink that never returns (dead) "
            "or a TCP peer that stops reading (stalled-peer)"
        )
        header = (
            "setup / sink",
            "emit ns",
            "loop CPU ns",
            "peak RSS MiB",
            "stop s",
            "delivered",
            "lost",
        )
        parts += [_table(header, rows, markdown), ""]

    rows = []
    for setup in setups:
        e = _scenario(summary, setup, "throughput", "fast")
        if not e:
            continue
        delivered, lost = _counts(e)
        rows.append(
            [
                setup,
                _fmt(e.get("records_per_s")),
                _fmt(e.get("cpu_us_per_record"), 2),
                _fmt(e.get("loop_cpu_us_per_record"), 2),
                _fmt(e.get("other_cpu_us_per_record"), 2),
                _fmt(e.get("elapsed_s"), 2),
                _fmt(e.get("drain_ms"), 0),
                _fmt(e.get("peak_rss_mb_max"), 1),
                delivered,
                lost,
            ]
        )
    if rows:
        e0 = _scenario(summary, setups[0], "throughput", "fast")
        per_run = e0.get("emitted", 0) // max(e0.get("runs", 1), 1)
        title(
            f"Drain throughput: {per_run:,} records logged as fast as possible into a JSON "
            "lines file, timed from the first call until the flush returns, median of "
            f"{e0.get('runs', 1)} run(s)"
        )
        header = (
            "setup",
            "records/s",
            "CPU µs/rec (all threads)",
            "loop thread",
            "other threads",
            "elapsed s",
            "drain after last call ms",
            "peak RSS MiB",
            "delivered",
            "lost",
        )
        parts += [_table(header, rows, markdown), ""]
    return "\n".join(parts).rstrip()


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def targets(
    summaries: dict[str, dict[str, Any]],
    scenarios: dict[str, dict[str, Any]],
    pairs: dict[str, dict[str, Any]] | None = None,
) -> list[list[str]]:
    """Issue 6's targets against the figures, per loop: ``[target, loop, measured, met]``.

    Where :func:`run_pairs` measured a comparison (``pairs``), its paired ratio decides;
    otherwise the ratio of the suite's medians does.
    """
    rows: list[list[str]] = []

    def add(target: str, loop: str, measured: str, met: bool | None) -> None:
        rows.append([target, loop, measured, "-" if met is None else ("yes" if met else "NO")])

    for loop, summary in summaries.items():
        paired = (pairs or {}).get(loop, {})

        def compare(
            target: str,
            pair: str | None,
            subject: float | None,
            reference: float | None,
            limit: float,
            unit: str,
            paired: dict[str, Any] = paired,
            loop: str = loop,
        ) -> None:
            """A row for ``subject / reference <= limit``: paired ratio if measured."""
            fmt = "{:,.0f} vs {:,.0f} ns" if unit == "ns" else "{:.3f} vs {:.3f} ms"
            entry = paired.get(pair) if pair else None
            if entry and entry.get("ratio") is not None:
                ratio = entry["ratio"]
                measured = fmt.format(entry["subject"], entry["reference"]) + (
                    f"; {ratio:.2f}x, median of {len(entry['ratios'])} back-to-back pairs"
                )
            else:
                ratio = _ratio(subject, reference)
                if ratio is None:
                    return
                measured = fmt.format(subject, reference) + f" ({ratio:.2f}x)"
            add(target, loop, measured, ratio <= limit)

        def fig(setup: str, test: str, key: str, summary: dict[str, Any] = summary) -> Any:
            return summary.get(setup, {}).get(test, {}).get(key)

        compare(
            "emit cost <= floor (list-append handler)",
            "emit vs floor",
            fig("aiolog", "emit", "emit_median_ns"),
            fig("floor", "emit", "emit_median_ns"),
            1.0,
            "ns",
        )
        vs = fig("aiolog", "emit", "vs_reference")
        if vs is not None:
            add("emit cost <= 0.6x stdlib-queue", loop, f"{vs:.3f}x (paired runs)", vs <= 0.6)
        compare(
            "lag p99 <= 1.1x stdlib-queue-nolistener",
            "lag vs control",
            fig("aiolog", "lag", "lag_p99_ms"),
            fig("stdlib-queue-nolistener", "lag", "lag_p99_ms"),
            1.1,
            "ms",
        )
        scen = scenarios.get(loop, {}).get("summary", {})
        ours = _scenario(scen, "aiolog", "throughput", "fast")
        theirs = _scenario(scen, "stdlib-queue", "throughput", "fast")
        ratio = _ratio(ours.get("records_per_s"), theirs.get("records_per_s"))
        if ratio is not None:
            cpu = _ratio(theirs.get("cpu_us_per_record"), ours.get("cpu_us_per_record")) or 0
            add(
                "drain throughput >= 2x stdlib QueueListener",
                loop,
                f"{ours['records_per_s']:,.0f} vs {theirs['records_per_s']:,.0f} rec/s "
                f"({ratio:.2f}x); CPU per record {cpu:.2f}x less",
                ratio >= 2.0,
            )
        fast = _scenario(scen, "aiolog", "emit", "fast")
        impaired = [sink for sink in SINKS if sink != "fast"]
        lag_fast = _scenario(scen, "aiolog", "lag", "fast")
        for sink in impaired:
            compare(
                f"{sink} sink: emit within 10% of fast sink",
                f"emit {sink} vs fast",
                _scenario(scen, "aiolog", "emit", sink).get("emit_median_ns"),
                fast.get("emit_median_ns"),
                1.1,
                "ns",
            )
            compare(
                f"{sink} sink: lag p99 within 10% of fast sink",
                None,
                _scenario(scen, "aiolog", "lag", sink).get("lag_p99_ms"),
                lag_fast.get("lag_p99_ms"),
                1.1,
                "ms",
            )
        for sink in STALL_SINKS:
            dead = _scenario(scen, "aiolog", "dead", sink)
            std = _scenario(scen, "stdlib-queue", "dead", sink)
            if not dead:
                continue
            per_run = dead["emitted"] // max(dead["runs"], 1)
            other = (
                f"; stdlib-queue {std['peak_rss_mb_max']:,.0f} MiB"
                if std.get("peak_rss_mb_max")
                else ""
            )
            add(
                f"memory bounded ({per_run:,} records, {sink} sink; < {RSS_BOUND_MB} MiB)",
                loop,
                f"aiolog peak RSS {dead['peak_rss_mb_max']:,.0f} MiB{other}",
                dead["peak_rss_mb_max"] < RSS_BOUND_MB,
            )
        stops = [
            _scenario(scen, "aiolog", test, sink)
            for test in ("emit", "lag", "dead")
            for sink in impaired
        ]
        worst = max(
            (e["stop_s_max"] for e in stops if e.get("stop_s_max") is not None), default=None
        )
        if worst is not None:
            std_stop = [
                _scenario(scen, "stdlib-queue", test, sink)
                for test in ("emit", "lag", "dead")
                for sink in impaired
            ]
            blocked = sum(1 for e in std_stop if e and not e.get("stop_returned"))
            add(
                f"stop(timeout={STOP_TIMEOUT_S:g}) returns within its timeout (+0.25 s)",
                loop,
                f"aiolog worst {worst:.2f} s; stdlib stop() blocked in {blocked} "
                f"of {sum(1 for e in std_stop if e)} stalled scenarios",
                worst <= STOP_TIMEOUT_S + 0.25,
            )
    return rows


TARGET_HEADER = ("target (issue 6)", "loop", "measured", "met")


def format_machine(machine: dict[str, Any]) -> str:
    """One line naming the machine and the Python the figures were measured on."""
    return (
        f"{machine['cpu']} ({machine['cpus']} CPUs), {machine['platform']}, "
        f"{machine['implementation']} {machine['python']}, {machine['loop']} loop, "
        f"aiolog {machine['aiolog']}"
    )


def verdict(summary: dict[str, Any]) -> str | None:
    """Compare aiolog's median emit cost with the stdlib QueueHandler's, if both ran."""
    try:
        ours = summary["aiolog"]["emit"]["emit_median_ns"]
        theirs = summary[REFERENCE]["emit"]["emit_median_ns"]
        ratio = summary["aiolog"]["emit"].get("vs_reference")
    except KeyError:
        return None
    paired = "" if ratio is None else f"; paired by repetition, aiolog costs {ratio:.2f}x"
    below = "below" if ours < theirs else "NOT below"
    return (
        f"aiolog's median emit cost ({ours:,.0f} ns) is {below} the stdlib QueueHandler's "
        f"({theirs:,.0f} ns){paired}."
    )


# ---------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A one-line progress display on stderr (when it is a terminal)."""
    tty = enabled and sys.stderr.isatty()

    def show(text: str) -> None:
        if tty:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
        elif enabled:
            sys.stderr.write(text + "\n")

    try:
        yield show
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m aiolog bench``."""
    parser.add_argument("--quick", action="store_true", help="one short repetition (~5 s)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def main(args: argparse.Namespace) -> int:
    """``python -m aiolog bench``: the ~30 s suite, on this machine."""
    config = SuiteConfig(**asdict(PRESETS["quick" if args.quick else "user"]))
    config.setups = list(CORE_SETUPS)  # the peers and scenarios: python -m benchmarks
    if args.reps is not None:
        config.reps = max(1, args.reps)
    config.loop = args.loop
    with _status(not args.quiet) as show:
        results = run_suite(config, show)
    print(format_tables(results))
    print()
    print("Machine:", format_machine(results["machine"]))
    line = verdict(results["summary"])
    if line:
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    print(json.dumps(run_worker()), flush=True)
    sys.stderr.flush()
    # A stdlib listener stuck on a dead or slow sink would hold the exit (logging.shutdown
    # flushes its handlers, aiolog's exit drain waits): the result is out, end here.
    os._exit(0)
