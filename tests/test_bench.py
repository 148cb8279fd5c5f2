"""The benchmark's pure parts: time-weighted lag, the tables and targets, the stalled peer.

``aiolog._bench`` is the core that ships (``python -m aiolog bench``); ``benchmarks.suite``
and ``benchmarks.worker`` are the repository's full suite built on it.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from typing import Any

import pytest

from aiolog import _bench
from aiolog._bench_worker import percentile, weighted_mean, weighted_percentile
from benchmarks import suite, worker


def test_weighted_percentile_with_equal_weights_is_the_percentile() -> None:
    """Equal weights give the nearest-rank percentile of the values, at every q."""
    values = [0.1, 0.2, 0.2, 0.5, 0.9, 1.5, 3.0, 7.0, 12.0, 40.0]
    pairs = [(value, 1.0) for value in values]
    for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert percentile(values, q) == weighted_percentile(pairs, q), q


def test_time_weighted_lag_sees_a_long_stall_that_p99_misses() -> None:
    """One 99 ms stall among 990 punctual 1 ms ticks: 9% of the time, 0.1% of the ticks."""
    ticks = sorted([(0.0, 1.0)] * 990 + [(99.0, 100.0)])  # (lag, interval) in ms
    assert 0.0 == percentile([lag for lag, _ in ticks], 0.99)
    assert 99.0 == weighted_percentile(ticks, 0.99)
    assert 0.0 == weighted_percentile(ticks, 0.9)  # 990 of the 1 090 ms were punctual
    assert 99.0 * 100.0 / 1090.0 == pytest.approx(weighted_mean(ticks))


def test_weighted_percentile_bounds() -> None:
    """No samples: NaN; q=1: the largest value; a tie at the threshold takes the next one."""
    assert math.isnan(weighted_percentile([], 0.5))
    assert 3.0 == weighted_percentile([(1.0, 5.0), (2.0, 1.0), (3.0, 1.0)], 1.0)
    assert 2.0 == weighted_percentile([(1.0, 0.5), (2.0, 0.5)], 0.5)
    assert 1.0 == weighted_percentile([(1.0, 0.5), (2.0, 0.5)], 0.49)


def test_weighted_mean() -> None:
    """Values weighted by their weights; NaN without weight."""
    assert 2.5 == weighted_mean([(1.0, 1.0), (3.0, 3.0)])
    assert math.isnan(weighted_mean([]))
    assert math.isnan(weighted_mean([(4.0, 0.0)]))


def _lag(**figures: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "lag_p50_ms": 0.2,
        "lag_p99_ms": 0.9,
        "lag_max_ms": 5.0,
        "rate_achieved": 20_000.0,
        "loop_cpu_us_per_record": 7.0,
        "emitted": 30_000,
        "delivered": 30_000,
        "lost": 0,
        "drain_ms": 1.0,
    }
    entry.update(figures)
    return entry


def test_lag_table_has_the_time_weighted_columns() -> None:
    """tw mean and tw p99 sit after max; results recorded before them show ``-``."""
    summary = {
        "aiolog": {"lag": _lag(lag_tw_mean_ms=0.25, lag_tw_p99_ms=4.5)},
        "older": {"lag": _lag()},
    }
    rows = _bench.lag_rows(summary)
    header = list(_bench.LAG_HEADER)
    mean, p99 = header.index("tw mean ms"), header.index("tw p99 ms")
    assert header.index("max ms") + 1 == mean
    assert ["0.250", "4.500"] == [rows[0][mean], rows[0][p99]]
    assert ["-", "-"] == [rows[1][mean], rows[1][p99]]
    assert all(len(header) == len(row) for row in rows)


def _scenarios() -> dict[str, Any]:
    """Scenario results as ``run_scenarios`` summarises them, fast sink and stalled peer."""

    def entry(**figures: Any) -> dict[str, Any]:
        return {"runs": 1, "emitted": 11_000, "delivered": None, "lost": None, **figures}

    stalled = {"stop_s_max": 2.1, "stop_returned": True, "peak_rss_mb_max": 45.0}
    blocked = {"stop_s_max": 4.0, "stop_returned": False, "peak_rss_mb_max": 60.0}
    summary = {
        "aiolog/emit/fast": entry(emit_median_ns=4000.0, delivered=11_000, lost=0),
        "aiolog/lag/fast": entry(lag_p99_ms=1.0, lag_tw_p99_ms=1.2),
        "aiolog/emit/stalled-peer": entry(emit_median_ns=4200.0, lost=30_000, **stalled),
        "aiolog/lag/stalled-peer": entry(lag_p99_ms=1.5, lag_tw_p99_ms=1.6, **stalled),
        "stdlib-queue/emit/stalled-peer": entry(emit_median_ns=9000.0, **blocked),
        "stdlib-queue/lag/stalled-peer": entry(lag_p99_ms=1.1, **blocked),
        "aiolog/dead/stalled-peer": entry(emitted=1_000_000, **stalled),
        "stdlib-queue/dead/stalled-peer": entry(emitted=1_000_000, **blocked),
    }
    return {"setups": ["stdlib-queue", "aiolog"], "summary": summary}


def test_format_scenarios_has_stalled_peer_rows() -> None:
    """The stalled peer gets a row per setup in the sink table and in the volume table."""
    text = suite.format_scenarios(_scenarios())
    sink_rows = [line for line in text.splitlines() if line.startswith("aiolog / stalled-peer")]
    assert 2 == len(sink_rows), text
    assert "1.600" in sink_rows[0]  # lag tw p99
    assert "1,000,000 records into a sink that never returns" in text
    blocked = [line for line in text.splitlines() if line.startswith("stdlib-queue / stalled")]
    assert all("> 4.00 (blocked)" in line for line in blocked), text


def test_targets_check_the_stalled_peer() -> None:
    """Emit and lag against the fast sink, memory and stop time, as for the dead sink."""
    rows = {row[0]: row for row in suite.targets({"asyncio": {}}, {"asyncio": _scenarios()})}
    emit = rows["stalled-peer sink: emit within 10% of fast sink"]
    assert ["4,200 vs 4,000 ns (1.05x)", "yes"] == emit[2:]
    lag = rows["stalled-peer sink: lag p99 within 10% of fast sink"]
    assert ["1.500 vs 1.000 ms (1.50x)", "NO"] == lag[2:]
    memory = rows["memory bounded (1,000,000 records, stalled-peer sink; < 200 MiB)"]
    assert ["aiolog peak RSS 45 MiB; stdlib-queue 60 MiB", "yes"] == memory[2:]
    stop = rows["stop(timeout=2) returns within its timeout (+0.25 s)"]
    assert "aiolog worst 2.10 s; stdlib stop() blocked in 3 of 3 stalled scenarios" == stop[2]


def test_paired_comparisons_decide_where_they_were_measured() -> None:
    """A back-to-back pair's median ratio overrides the ratio of the suite's medians."""
    summary = {
        "floor": {"emit": {"emit_median_ns": 4_900.0}},
        "aiolog": {"emit": {"emit_median_ns": 5_300.0}, "lag": {"lag_p99_ms": 1.0}},
        "stdlib-queue-nolistener": {"lag": {"lag_p99_ms": 1.0}},
    }
    pairs = {
        "asyncio": {
            "emit vs floor": {
                "ratios": [0.9, 0.91, 1.2],
                "ratio": 0.91,
                "reference": 4_950.0,
                "subject": 4_500.0,
            },
            "emit stalled-peer vs fast": {
                "ratios": [1.3],
                "ratio": 1.3,
                "reference": 4_000.0,
                "subject": 5_200.0,
            },
        }
    }
    rows = {
        row[0]: row for row in suite.targets({"asyncio": summary}, {"asyncio": _scenarios()}, pairs)
    }
    floor = rows["emit cost <= floor (list-append handler)"]
    assert ["4,500 vs 4,950 ns; 0.91x, median of 3 back-to-back pairs", "yes"] == floor[2:]
    stalled = rows["stalled-peer sink: emit within 10% of fast sink"]
    assert ["5,200 vs 4,000 ns; 1.30x, median of 1 back-to-back pairs", "NO"] == stalled[2:]
    lag = rows["lag p99 <= 1.1x stdlib-queue-nolistener"]  # not paired: the suite's medians
    assert ["1.000 vs 1.000 ms (1.00x)", "yes"] == lag[2:]
    unpaired = suite.targets({"asyncio": summary}, {})
    assert "5,300 vs 4,900 ns (1.08x)" == unpaired[0][2]


@pytest.mark.skipif(not hasattr(socket, "MSG_DONTWAIT"), reason="needs MSG_DONTWAIT")
def test_stalled_peer_blocks_a_writer_until_it_closes() -> None:
    """The stdlib-side handler finds the buffers full, blocks, and is released by close()."""
    peer = worker.StalledPeer()
    handler = worker.PeerSocketHandler(peer.address)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.makeLogRecord({"msg": "x" * 1000})

    def write() -> None:
        while not handler.stalled.is_set():  # the write that finds them full blocks
            handler.emit(record)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert handler.stalled.wait(30)
    finally:
        peer.close()
    writer.join(30)
    assert not writer.is_alive()
    handler.emit(record)  # the connection is gone: the handler no longer writes
