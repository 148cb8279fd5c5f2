"""The shipped benchmark's pure parts: time-weighted lag, the emit and lag tables.

``aiolog._bench`` and ``aiolog._bench_worker`` ship with the package (``python -m aiolog
bench``); the full suite's parts are in ``tests/test_benchmarks_suite.py``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from aiolog import _bench
from aiolog._bench_worker import percentile, weighted_mean, weighted_percentile


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
