"""Records/s from FluentSink to FluentServer on loopback (the figure in docs/sinks.md).

    .venv/bin/python -m tests.integration.fluent.throughput [RECORDS]

Two ways, each with acks (plain and gzip) and without: batches of 512 records (one
``extra=`` field) written straight to the sink with ``await sink.write(batch)``, as the
other sinks' figures are measured, encoding included; and through a whole pipeline
(``logging`` call to acked delivery: ``configure``, log, ``flush``). The server writes
its entries to /dev/null (it still decodes and JSON-encodes each one). Best of 3 runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import aiolog
from aiolog.sinks.fluent import FluentSink
from tests.integration.fluent_peer import FluentPeer

QUERIES = {"acks": "", "acks+gzip": "compress=gzip", "no acks": "require_ack=false"}


def records(count: int) -> list[logging.LogRecord]:
    made = []
    for i in range(count):
        record = logging.LogRecord("bench", logging.INFO, __file__, 1, "n=%d", (i,), None)
        record.message = record.getMessage()
        record.user = "ann"
        made.append(record)
    return made


def straight(url: str, batch: list[logging.LogRecord], count: int) -> float:
    sink = FluentSink.from_url(url)

    async def run() -> float:
        await sink.write(batch[:1])  # connect first
        start = time.perf_counter()
        for _ in range(count // len(batch)):
            assert 0 == await sink.write(batch)
        elapsed = time.perf_counter() - start
        await sink.aclose()
        return elapsed

    return count // len(batch) * len(batch) / asyncio.run(run())


def pipeline(url: str, count: int) -> float:
    log = logging.getLogger("bench.pipeline")
    with aiolog.configure([url], level=logging.INFO) as pipe:
        log.info("warm-up")
        assert pipe.flush(30)
        start = time.perf_counter()
        for i in range(count):
            log.info("n=%d", i, extra={"user": "ann"})
        assert pipe.flush(120)
        elapsed = time.perf_counter() - start
    return count / elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = records(512)
    with tempfile.TemporaryDirectory() as tmp:
        peer = FluentPeer(Path(tmp))
        peer.out = Path("/dev/null")
        peer.start()
        try:
            for name, query in QUERIES.items():
                url = peer.url("bench") + (f"?{query}" if query else "")
                direct = max(straight(url, batch, count) for _ in range(3))
                whole = max(pipeline(url, count) for _ in range(3))
                print(f"{name:10} straight {direct:10,.0f} records/s   pipeline {whole:10,.0f}")
        finally:
            peer.stop()


if __name__ == "__main__":
    main()
