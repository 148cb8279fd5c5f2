"""One child of the full suite: ``python -m benchmarks.worker SETUP TEST ...``.

The core setups and the emit and lag tests are :mod:`aiolog._bench_worker`'s (what ``python -m
aiolog bench`` runs); this adds what only the recorded suite needs: the peers (structlog,
loguru, aiologger, a plain ``FileHandler``), the sinks of the scenarios (slow, dead, a TCP
peer that stops reading) and the ``dead`` and ``throughput`` tests. It prints one JSON
object on stdout, as the core worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiolog import _bench_worker
from aiolog._bench_worker import StdlibJSONFormatter, count_lines, percentile

#: Setup name -> one-line description, in report order: the core's, then the peers.
SETUPS: dict[str, str] = {
    **_bench_worker.SETUPS,
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
STOP_CAP_S = 4.0
#: The stalled peer's ``SO_RCVBUF``: small, so that its side of the connection holds a few
#: KB and the writer blocks once its own send buffer (a few MB on Linux) is full.
PEER_RCVBUF = 4096
#: Before a test with the stalled peer, records are logged at this rate (one a healthy sink
#: keeps up with) until the sink is stuck; the child fails if that takes longer than
#: :data:`FILL_TIMEOUT_S`.
FILL_RATE = 20_000
FILL_TIMEOUT_S = 30.0


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


class StalledPeer:
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


class PeerSocketHandler(logging.Handler):
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


class SuiteSetup(_bench_worker.Setup):
    """:class:`aiolog._bench_worker.Setup` plus the peers and the scenario sinks.

    ``sink`` is what sits behind the queue of the two :data:`SCENARIO_SETUPS`;
    ``queue_size`` sizes aiolog's queue and sink buffer to hold a whole throughput run.
    """

    def __init__(
        self, name: str, directory: str, sink: str = "fast", queue_size: int | None = None
    ) -> None:
        super().__init__(name, directory)
        self.sink = sink
        self.queue_size = queue_size
        self.stop_cap = STOP_CAP_S
        self.is_async = name in ASYNC_SETUPS
        self.extra["sink"] = sink
        self._close: Callable[[], None] | None = None
        self._aclose: Callable[[], Coroutine[Any, Any, Any]] | None = None
        self._complete: Callable[[], None] | None = None
        self._peer: StalledPeer | None = None

    def install(self) -> None:
        if self.sink == "stalled-peer":
            self._peer = StalledPeer()
        if self.name == "aiolog" and self.queue_size is not None:
            import aiolog

            self.root.setLevel(logging.INFO)
            self.logger.setLevel(logging.NOTSET)
            # The throughput test: a queue and a sink buffer that hold the whole run,
            # so the drain is measured, not the drop policy.
            self._pipeline = aiolog.configure(
                [self.aiolog_sink()],
                level="INFO",
                queue_size=self.queue_size,
                sink_buffer=self.queue_size,
                sink_buffer_bytes=self.queue_size * 1024,
            )
        elif self.name in _bench_worker.SETUPS:
            super().install()
        elif self.name == "stdlib-file":
            self.root.setLevel(logging.INFO)
            self._handler = logging.FileHandler(self.path, encoding="utf-8")
            self._handler.setFormatter(StdlibJSONFormatter())
            self.root.addHandler(self._handler)
        else:
            self.root.setLevel(logging.INFO)
            self._install_peer()

    def _install_peer(self) -> None:
        if self.name in ("structlog-default", "structlog-ainfo"):
            import structlog

            out = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
            structlog.reset_defaults()
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
            log = structlog.get_logger(_bench_worker.LOGGER_NAME)
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

            alog = Logger(name=_bench_worker.LOGGER_NAME, level=LogLevel.INFO)
            file_handler = AsyncFileHandler(filename=self.path)
            file_handler.formatter = JsonFormatter()
            alog.add_handler(file_handler)
            # aiologger takes one mapping of arguments, not positional ones.
            self.call = lambda fmt, s, i: alog.info(fmt, {"s": s, "i": i})
            self.fmt = "msg %(s)s %(i)d"
            self._aclose = alog.shutdown
        else:
            raise ValueError(f"unknown setup {self.name!r} (known: {', '.join(SETUPS)})")

    def sink_handler(self) -> logging.Handler:
        if self.sink == "slow":
            return _SlowHandler(self.path, encoding="utf-8")
        if self.sink == "dead":
            return _DeadHandler()
        if self._peer is not None:
            return PeerSocketHandler(self._peer.address)
        return super().sink_handler()

    def aiolog_sink(self) -> str | logging.Handler:
        if self._peer is not None:  # aiolog's own NDJSON TCP sink, default options
            host, port = self._peer.address
            return f"tcp://{host}:{port}"
        if self.sink != "fast":
            handler = self.sink_handler()
            handler.setFormatter(StdlibJSONFormatter())
            return handler
        return super().aiolog_sink()

    async def measure(self, test: _bench_worker.Test, args: argparse.Namespace) -> dict[str, Any]:
        """Run ``test``; with the stalled peer, once the peer's buffers are full."""
        if self.sink == "stalled-peer":
            self.extra["fill_records"] = await _fill(self)
        return await test(self, args)

    def stalled(self) -> bool:
        """Whether the sink behind the queue has stopped taking records (the stalled peer).

        The stdlib handler says so itself; aiolog's sink buffer overflows (its sink stats
        count drops) once the sink has taken nothing for a while.
        """
        if self._listener is not None:
            handler = self._listener.handlers[0]
            assert isinstance(handler, PeerSocketHandler)
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
        if self._complete is None:
            return super().drain()
        start = time.perf_counter()
        self._complete()
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
        return None if self._peer is not None else count_lines(self.path)

    def _tear_down(self) -> tuple[int | None, int | None]:
        if self.name == "stdlib-queue" and self.sink != "fast":
            # The listener may still be writing: count, leave it.
            assert self._queue is not None
            self.extra["left_in_queue"] = self._queue.qsize()
            return self._delivered(), None
        if self.name == "aiolog" and (self.sink != "fast" or self._peer is not None):
            stats = self._pipeline.stats()
            self.extra["stats"] = stats
            return self._delivered(), self.dropped(stats)
        if self.name in _bench_worker.SETUPS:
            return super().finish()
        if self._close is not None:
            self._close()
        if isinstance(self._handler, logging.FileHandler):
            self.root.removeHandler(self._handler)
            self._handler.close()
        return count_lines(self.path), None


# ---------------------------------------------------------------------------- scenario tests


async def _dead_test(setup: _bench_worker.Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Log ``args.n`` records into a dead sink, in bursts; then stop the listener."""
    assert isinstance(setup, SuiteSetup)
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


async def _throughput_test(setup: _bench_worker.Setup, args: argparse.Namespace) -> dict[str, Any]:
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


async def _fill(setup: SuiteSetup) -> int:
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


def main() -> None:
    """Parse the child's command line, run it, print the result and end the process."""
    parser = _bench_worker.worker_parser(
        "python -m benchmarks.worker", SETUPS, (*_bench_worker.TESTS, *SCENARIO_TESTS)
    )
    parser.add_argument("--sink", choices=SINKS, default="fast", help="scenarios only")
    parser.add_argument("--queue-size", type=int, help="aiolog's queue bound")
    parser.add_argument("--stop-cap", type=float, default=STOP_CAP_S)
    args = parser.parse_args()
    if args.sink != "fast" and args.setup not in SCENARIO_SETUPS:
        parser.error(f"--sink {args.sink} works with {', '.join(SCENARIO_SETUPS)} only")

    def make_setup(directory: str) -> SuiteSetup:
        setup = SuiteSetup(args.setup, directory, args.sink, args.queue_size)
        setup.stop_cap = args.stop_cap
        return setup

    tests: dict[str, _bench_worker.Test] = {
        **_bench_worker.CORE_TESTS,
        "dead": _dead_test,
        "throughput": _throughput_test,
    }
    _bench_worker.worker_exit(_bench_worker.run_worker(args, make_setup, tests))


if __name__ == "__main__":
    main()
