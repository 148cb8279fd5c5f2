"""``benchmarks/burst.py``: each built-in setup in a real child, the summary, the docs section."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from aiolog import _bench_worker

burst = pytest.importorskip("benchmarks.burst", reason="benchmarks/ is not in this tree")

SMOKE_N = 2_000

#: What the parent's view of one run holds, whatever the setup.
RUN_KEYS = {
    "setup",
    "n",
    "emit_s",
    "stop_s",
    "to_disk_s",
    "cpu_s",
    "cpu_us_per_record",
    "cpu_us_per_delivered",
    "loop_cpu_us_per_record",
    "other_cpu_us_per_record",
    "rss_start_mb",
    "peak_rss_mb",
    "delivered_at_stop",
    "delivered",
    "in_order",
    "process_wall_s",
}


@pytest.mark.parametrize("setup", burst.BUILTIN)
def test_each_builtin_setup_delivers_the_burst_in_order(setup: str, tmp_path: Path) -> None:
    """A fresh child logs 2 000 records; all are in the file, in order, when stop returns."""
    result = burst.run_child(setup, SMOKE_N, tmp_path, timeout=30)
    assert set() == RUN_KEYS - set(result)
    assert setup == result["setup"]
    assert SMOKE_N == result["n"]
    assert SMOKE_N == result["delivered"]
    assert SMOKE_N == result["delivered_at_stop"]
    assert result["in_order"] is True
    assert [] == list(tmp_path.iterdir())  # the parent removed the file after counting
    if setup == "aiolog":
        assert 0 == result["lost"]
        assert result["stop_ok"] is True


def test_formatter_writes_the_line_of_the_main_suite() -> None:
    """burst.py's copy writes the line of ``aiolog._bench_worker.StdlibJSONFormatter``."""
    record = logging.LogRecord(
        "bench.burst", logging.INFO, __file__, 1, burst.MESSAGE, (7, "1"), None
    )
    main_suite = _bench_worker.StdlibJSONFormatter().format(record)
    assert main_suite == burst.StdlibJSONFormatter().format(record)


def test_check_file_counts_the_records_and_checks_their_order(tmp_path: Path) -> None:
    """Missing, repeated or swapped records are not in order; other lines are not records."""
    path = tmp_path / "out.jsonl"

    def check(*ids: int | None) -> tuple[int, int, bool, bool]:
        path.write_text(
            "".join(
                '{"message": "aiolog lost 1 record"}\n'
                if i is None
                else f'{{"message": "request {i} handled in 12.5 ms"}}\n'
                for i in ids
            )
        )
        found = burst.check_file(path, 3)
        return found["lines"], found["delivered"], found["ascending"], found["in_order"]

    assert (3, 3, True, True) == check(0, 1, 2)
    assert (4, 3, True, True) == check(0, None, 1, 2)  # a notice line is no loss
    assert (2, 2, True, False) == check(0, 2)  # a gap
    assert (3, 3, False, False) == check(0, 2, 1)
    assert (4, 4, False, False) == check(0, 1, 2, 2)
    assert {"lines": 0, "delivered": 0, "ascending": True, "in_order": False} == (
        burst.check_file(tmp_path / "missing.jsonl", 3)
    )


def _run(setup: str, n: int, rep: int, cpu: float, delivered: int | None = None) -> dict[str, Any]:
    delivered = n if delivered is None else delivered
    run: dict[str, Any] = {
        "setup": setup,
        "n": n,
        "rep": rep,
        "cpu_us_per_record": cpu,
        "cpu_us_per_delivered": cpu * n / delivered,
        "loop_cpu_us_per_record": cpu / 2,
        "other_cpu_us_per_record": cpu / 2,
        "emit_s": 1.0,
        "stop_s": 0.5,
        "to_disk_s": 1.5,
        "process_wall_s": 2.0,
        "process_cpu_s": 1.8,
        "rss_start_mb": 20.0,
        "peak_rss_mb": 60.0,
        "delivered": delivered,
        "delivered_at_stop": delivered,
        "in_order": delivered == n,
        "ascending": True,
        "other_lines": 0 if delivered == n else 2,
    }
    if setup == "aiolog":
        run.update(lost=n - delivered, stop_ok=True)
    return run


def _results() -> dict[str, Any]:
    runs = [
        _run("aiolog", 1000, 0, 10.0, delivered=900),
        _run("aiolog", 1000, 1, 12.0),
        _run("stdlib-queue", 1000, 0, 20.0),
        _run("stdlib-queue", 1000, 1, 20.0),
        _run("stdlib-file", 1000, 0, 10.0),
        _run("stdlib-file", 1000, 1, 8.0),
    ]
    return {
        "config": {"ns": [1000], "reps": 2, "setups": list(burst.BUILTIN)},
        "machine": {
            "cpu": "test CPU",
            "cpus": 2,
            "implementation": "CPython",
            "python": "3.11.7",
            "git_note": "abc1234",
        },
        "versions": {"aiolog-queue": "0.0.0"},
        "skipped": {"logxide": "not measured"},
        "failed": {},
        "summary": burst.summarise(runs),
        "ratios": burst.paired_ratios(runs),
        "runs": runs,
    }


def test_summary_totals_the_counts_and_pairs_the_ratios() -> None:
    """Losses are totalled over the runs, never a median; ratios pair runs of one repetition."""
    results = _results()
    aiolog = results["summary"]["aiolog"]["1000"]
    assert (2, 2000, 1900, 1, 100) == (
        aiolog["reps"],
        aiolog["emitted"],
        aiolog["delivered"],
        aiolog["in_order_runs"],
        aiolog["lost"],
    )
    assert 11.0 == aiolog["cpu_us_per_record"]
    queue = results["ratios"]["aiolog/stdlib-queue"]["1000"]
    assert [0.5, 0.6] == queue["cpu_us_per_record"]["ratios"]
    assert 0.55 == pytest.approx(queue["cpu_us_per_record"]["median"])
    assert [pytest.approx(10 / 9 / 2), 0.6] == queue["cpu_us_per_delivered"]["ratios"]
    assert [1.0, 1.5] == results["ratios"]["aiolog/stdlib-file"]["1000"]["cpu_us_per_record"][
        "ratios"
    ]
    report = burst.format_report(results)
    assert "1,900/2,000 (100 dropped, +2 other lines)" in report
    assert "gaps, no reordering" in report
    assert "logxide: not measured" in report


def test_write_docs_replaces_only_its_own_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page outside the markers is kept; a second write replaces the section in place."""
    monkeypatch.setattr(burst, "plot", lambda results, path: False)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nGenerated part.\n", encoding="utf-8")
    results = _results()
    assert [page] == burst.write_docs(results, tmp_path)
    results["machine"]["git_note"] = "def5678"
    burst.write_docs(results, tmp_path)
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nGenerated part.\n\n" + burst.DOCS_BEGIN)
    assert 1 == text.count("## Burst to disk")
    assert 1 == text.count(burst.DOCS_END)
    assert "def5678" in text
    assert "abc1234" not in text
    assert "`aiolog`, N = 1,000: 1,900 of 2,000 records" in text
