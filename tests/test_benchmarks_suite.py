"""The repository's full suite (``benchmarks/``): scenario tables, targets, the stalled peer."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest

suite = pytest.importorskip("benchmarks.suite", reason="benchmarks/ is not in this tree")
worker = pytest.importorskip("benchmarks.worker", reason="benchmarks/ is not in this tree")


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


def test_regenerating_the_page_keeps_the_sections_it_does_not_write(tmp_path: Any) -> None:
    """``--write-docs`` rewrites the suite's tables and keeps the burst and sink sections."""
    import json
    from pathlib import Path

    from benchmarks import _docs

    root = Path(__file__).resolve().parent.parent
    results = json.loads((root / "benchmarks" / "results" / "latest.json").read_text())
    page = tmp_path / "benchmarks.md"
    sections = {
        name: f"<!-- {name}:begin -->\n## {name}\n\nwritten elsewhere\n<!-- {name}:end -->"
        for name in _docs.KEPT_SECTIONS
    }
    page.write_text("old tables\n\n" + "\n\n".join(sections.values()) + "\n")
    _docs.write_docs(results, tmp_path)
    text = page.read_text()
    assert "old tables" not in text
    for section in sections.values():
        assert 1 == text.count(section)
