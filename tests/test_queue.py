"""RecordQueue: bound, overflow policies, exact counters, the stdlib queue protocol."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from aiolog import RecordQueue


def test_default_bound_holds_a_burst() -> None:
    """The default queue holds 200 000 records or 128 MiB and drops the newest beyond."""
    q = RecordQueue()
    assert 200_000 == q.maxsize
    assert 128 * 1024 * 1024 == q.max_bytes
    assert "drop_newest" == q.overflow
    assert 5.0 == q.timeout


def test_drop_newest_keeps_the_first_and_counts_the_rest() -> None:
    """drop_newest rejects records past the bound and counts each one."""
    q = RecordQueue(maxsize=3)
    results = [q.offer(i) for i in range(5)]
    assert [True, True, True, False, False] == results
    assert [0, 1, 2] == q.drain(10)
    assert 3 == q.enqueued
    assert 2 == q.dropped


def test_drop_oldest_evicts_and_counts() -> None:
    """drop_oldest keeps the newest records and counts every eviction."""
    q = RecordQueue(maxsize=3, overflow="drop_oldest")
    for i in range(5):
        assert q.offer(i)
    assert [2, 3, 4] == q.drain(10)
    assert 5 == q.enqueued
    assert 2 == q.dropped


def test_block_waits_for_room_off_the_loop() -> None:
    """block makes a plain thread wait until the consumer makes room."""
    q = RecordQueue(maxsize=1, overflow="block", timeout=30)
    q.offer("first")
    started = threading.Event()
    result: list[bool] = []

    def producer() -> None:
        started.set()
        result.append(q.offer("second"))

    t = threading.Thread(target=producer)
    t.start()
    started.wait()
    # The producer is blocked (or about to be); draining makes room and wakes it.
    while True:
        with q._space:
            if q._blocked:
                break
    assert ["first"] == q.drain(10)
    t.join(10)
    assert [True] == result
    assert ["second"] == q.drain(10)
    assert 0 == q.dropped


def test_block_times_out_and_counts() -> None:
    """block drops (and counts) a record when no room appears within the timeout."""
    q = RecordQueue(maxsize=1, overflow="block", timeout=0.01)
    q.offer(1)
    assert not q.offer(2)
    assert 1 == q.dropped


def test_block_never_waits_on_an_event_loop_thread() -> None:
    """A thread running an event loop drops at once instead of honouring the timeout."""
    q = RecordQueue(maxsize=1, overflow="block", timeout=3600)

    async def main() -> bool:
        q.offer(1)
        return q.offer(2)

    assert asyncio.run(main()) is False
    assert 1 == q.dropped


def test_counters_are_exact_under_threads() -> None:
    """Counts stay exact with several producer threads racing."""
    q = RecordQueue(maxsize=1000)
    barrier = threading.Barrier(4)

    def producer() -> None:
        barrier.wait()
        for i in range(5000):
            q.offer(i)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 20_000 == q.enqueued + q.dropped
    assert 1000 == q.enqueued
    assert 1000 == q.qsize()
    assert 1000 == q.high_water


def test_stdlib_protocol_raises_full_and_empty() -> None:
    """put_nowait raises queue.Full on a drop and get_nowait raises queue.Empty."""
    q = RecordQueue(maxsize=1)
    q.put_nowait("a")
    with pytest.raises(queue.Full):
        q.put_nowait("b")
    assert "a" == q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_idle_listener_is_woken_once() -> None:
    """The first record after the listener went idle wakes it; later ones do not."""
    q = RecordQueue()
    wakes: list[int] = []
    q.wake = lambda: wakes.append(1)
    q.offer(1)
    assert [] == wakes
    q.idle = True
    q.offer(2)
    q.offer(3)
    assert [1] == wakes


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"maxsize": 0}, "maxsize"),
        ({"maxsize": -5}, "maxsize"),
        ({"overflow": "drop_random"}, "overflow"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_settings_name_the_culprit(kwargs: dict[str, object], culprit: str) -> None:
    """Bad settings raise ValueError naming the setting."""
    with pytest.raises(ValueError, match=culprit):
        RecordQueue(**kwargs)  # type: ignore[arg-type]


def test_drain_keeps_what_it_took_when_forward_empties_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drain that finds the queue emptied under it (a reconfigure's forward() on another
    thread) returns what it took instead of raising and losing it."""
    import aiolog._queue as queue_module

    q, successor = RecordQueue(), RecordQueue()
    for i in range(5):
        q.offer(i)
    real_unpack = queue_module.unpack

    def unpack_then_forward(item: object) -> object:
        if not successor.qsize():
            q.forward(successor)  # what close() does, here mid-drain
        return real_unpack(item)

    monkeypatch.setattr(queue_module, "unpack", unpack_then_forward)
    assert [0] == q.drain(10)
    monkeypatch.undo()
    assert [1, 2, 3, 4] == successor.drain(10)
