"""KafkaSink against a real Kafka-protocol broker (tansu), read back with assign().

Written means acknowledged: the tests compare the sink's counts with the broker's
contents and with the delivery reports librdkafka handed the sink. tansu keeps its data in
memory, so a restarted broker has lost what the first one acknowledged: the restart test
checks what the second one acknowledged, and that every record is counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolog
from tests.integration.engines import Tansu, read_topic, wait_for_topic
from tests.integration.peers import in_ci

try:
    import confluent_kafka  # noqa: F401
except ImportError:
    if in_ci():
        raise
    pytest.skip("confluent-kafka is not installed", allow_module_level=True)

from aiolog.sinks.kafka import KafkaSink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Tansu]:
    """A tansu broker on a free port; not started (each test says when)."""
    broker = Tansu(tmp_path / "tansu")
    try:
        yield broker
    finally:
        broker.stop()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` (the sink's state, read across threads) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def values(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in messages]


def test_ten_thousand_records_arrive_exactly_once_with_acks_all(tansu: Tansu) -> None:
    """10 000 records from 8 tasks: each arrives once, fields intact, keyed by request_id."""
    tansu.start()
    url = f"kafka://{tansu.bootstrap}/app-logs?acks=all&compression=gzip&key_field=request_id"
    log = logging.getLogger("shop.orders")

    async def worker(n: int) -> None:
        request_id.set(f"req-{n}")
        for i in range(1250):
            level = logging.WARNING if i % 2 else logging.INFO
            log.log(level, "task %d record %d", n, i, extra={"seq": n * 1250 + i})
            if i % 100 == 0:
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(worker(n), name=f"w{n}") for n in range(8)))

    with aiolog.configure([url], level="INFO") as pipeline:
        asyncio.run(main())
        assert pipeline.flush(60)
        sink = pipeline.sinks[0]
        stats = pipeline.stats()["sinks"][sink.url]
    assert (10_000, 10_000, 0) == (stats["offered"], stats["written"], stats["dropped"])
    assert url == sink.url  # nothing secret in it: shown whole
    messages = read_topic(tansu.bootstrap, "app-logs")
    got = values(messages)
    counts = collections.Counter(v["seq"] for v in got)
    assert set(range(10_000)) == set(counts)
    assert {1} == set(counts.values())  # exactly once
    for message, value in zip(messages, got, strict=True):
        n, i = divmod(value["seq"], 1250)
        assert f"task {n} record {i}" == value["message"]
        assert "shop.orders" == value["logger"]
        assert ("warning" if i % 2 else "info") == value["level"]
        assert f"w{n}" == value["task"]
        assert {"request_id": f"req-{n}"} == value["context"]
        assert f"req-{n}".encode() == message.key()
    # One key, one partition: each task's records are in order.
    by_task: dict[str, list[int]] = collections.defaultdict(list)
    for value in got:
        by_task[value["task"]].append(value["seq"])
    for seqs in by_task.values():
        assert sorted(seqs) == seqs


def test_broker_down_at_start_gets_everything_once_it_is_up(tansu: Tansu) -> None:
    """No broker: the batch waits (nothing lost), librdkafka retries; then all arrive once."""
    url = f"kafka://{tansu.bootstrap}/early?backoff_initial=0.05&backoff_max=0.5"
    log = logging.getLogger("shop.early")
    with aiolog.configure([url], level="INFO") as pipeline:
        for i in range(500):
            log.info("early %d", i, extra={"seq": i})
        sink = pipeline.sinks[0]
        assert wait_until(lambda: sink.errors >= 1, 20)  # it tried, and said so
        assert not pipeline.flush(0.2)
        assert 0 == pipeline.stats()["sinks"][sink.url]["written"]
        tansu.start()
        assert pipeline.flush(30)
        stats = pipeline.stats()["sinks"][sink.url]
    assert (500, 500, 0) == (stats["offered"], stats["written"], stats["dropped"])
    assert stats["last_error"].startswith("KafkaError:")
    got = values(wait_for_topic(tansu.bootstrap, "early", lambda m: len(m) >= 500))
    assert list(range(500)) == sorted(v["seq"] for v in got)


def test_no_blocking_call_on_the_listener_loop(tansu: Tansu, blockbuster: Any) -> None:
    """Producer made, records produced, acknowledgements awaited, producer closed: all
    without a blocking call on the listener's loop (blockbuster raises on one)."""
    tansu.start()
    url = f"kafka://{tansu.bootstrap}/quiet?compression=gzip"
    with aiolog.configure([url], level="INFO") as pipeline:
        for i in range(2000):
            logging.getLogger("shop").info("n %d", i, extra={"seq": i})
        assert pipeline.flush(30)
        sink = pipeline.sinks[0]
        assert pipeline.stop(10)
        stats = pipeline.stats()["sinks"][sink.url]
    assert (2000, 2000, 0) == (stats["offered"], stats["written"], stats["errors"])


class RecordingSink(KafkaSink):
    """A KafkaSink that keeps, for each acknowledged record, when the report came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acked: list[tuple[float, int]] = []

    def _delivered(self, batch: Any, error: Any, message: Any) -> None:
        seq = json.loads(message.value()).get("seq")  # None: aiolog's loss notice
        if error is None and seq is not None:
            self.acked.append((time.monotonic(), seq))
        super()._delivered(batch, error, message)


def test_broker_killed_and_restarted_mid_stream_counts_every_record(tansu: Tansu) -> None:
    """SIGKILL mid-stream, restart (its memory is gone): offered = written + dropped,
    written = acknowledgements, and all the new broker acknowledged is there, once."""
    tansu.start()
    sink = RecordingSink.from_url(
        f"kafka://{tansu.bootstrap}/restart?backoff_initial=0.05&backoff_max=0.5&delivery_timeout=3"
    )
    log = logging.getLogger("shop.restart")
    total = 6000
    third = threading.Event()
    with aiolog.configure([sink], level="INFO", stall_timeout=60) as pipeline:

        def produce() -> None:
            for i in range(total):
                log.info("r %d", i, extra={"seq": i})
                if i == total // 3:
                    third.set()
                if i % 200 == 0:
                    pipeline.flush(5)  # a steady stream, not one burst

        writer = threading.Thread(target=produce)
        writer.start()
        assert third.wait(30)
        errors = sink.errors
        tansu.kill()
        written_at_kill = pipeline.stats()["sinks"][sink.url]["written"]
        assert wait_until(lambda: sink.errors > errors, 20)  # the sink met the outage
        restarted_at = time.monotonic()
        tansu.start()
        writer.join(60)
        pipeline.flush(60)  # False when records were lost: the counts below say how many
        stats = pipeline.stats()["sinks"][sink.url]
        assert 0 == pipeline.stats()["queue"]["depth"]
    assert 0 == stats["buffered"]
    assert 0 < written_at_kill < total  # killed mid-stream
    assert total == stats["offered"]
    assert total == stats["written"] + stats["dropped"]
    assert len(sink.acked) == stats["written"]  # written = acknowledged, no more, no less
    after = {seq for when, seq in sink.acked if when > restarted_at}
    assert after  # the second broker acknowledged records
    got = collections.Counter(
        v["seq"] for v in values(read_topic(tansu.bootstrap, "restart")) if "seq" in v
    )
    assert after <= set(got)  # all it acknowledged is there
    assert set(got) <= set(range(total))
    assert {1} == set(got.values())  # and once
