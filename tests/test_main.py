"""``python -m aiolog``: the help, the demo and the bench (as users run them: a subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def row(report: str, label: str) -> list[str]:
    """The cells after ``label`` in the demo's table (numbers with thousands separators)."""
    match = re.search(rf"^{re.escape(label)}\s+(.*)$", report, re.MULTILINE)
    assert match is not None, f"no row {label!r} in:\n{report}"
    return match.group(1).split()


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_help_lists_the_subcommands() -> None:
    """``python -m aiolog --help`` exits 0 and names demo and bench."""
    proc = run_module("-m", "aiolog", "--help", timeout=30)
    assert 0 == proc.returncode, proc.stderr
    assert "demo" in proc.stdout
    assert "bench" in proc.stdout


def test_no_subcommand_prints_help_and_fails() -> None:
    """Without a subcommand the usage is printed and the exit status is 2."""
    proc = run_module("-m", "aiolog", timeout=30)
    assert 2 == proc.returncode
    assert "demo" in proc.stdout


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_subcommand_help(command: str) -> None:
    """Each subcommand has its own --help, in plain text (no reST markup)."""
    proc = run_module("-m", "aiolog", command, "--help", timeout=30)
    assert 0 == proc.returncode, proc.stderr
    assert f"python -m aiolog {command}" in proc.stdout
    assert "``" not in proc.stdout
    assert ":class:" not in proc.stdout


def test_version_is_the_installed_distribution() -> None:
    """``python -m aiolog --version`` prints the distribution's name and version, exit 0."""
    from importlib.metadata import version

    proc = run_module("-m", "aiolog", "--version", timeout=30)
    assert 0 == proc.returncode, proc.stderr
    assert f"aiolog-queue {version('aiolog-queue')}\n" == proc.stdout


@pytest.mark.timeout(120)
def test_demo_reports_and_aiolog_writes_every_record() -> None:
    """The demo prints its table, and aiolog wrote every record it logged, none dropped."""
    proc = run_module("-m", "aiolog", "demo", "--seconds", "1", timeout=110)
    assert 0 == proc.returncode, proc.stderr
    report = proc.stdout
    for label in (
        "loop lag p50 (ms)",
        "loop lag p99 (ms)",
        "loop lag max (ms)",
        "loop stalled > 5 ms (% of time)",
        "wall time (s)",
    ):
        cells = row(report, label)
        assert 2 == len(cells), cells
        for cell in cells:
            number(cell)
    logged = [number(c) for c in row(report, "records logged")]
    written = [number(c) for c in row(report, "records written")]
    assert logged[0] > 0
    assert logged[0] == written[0]  # aiolog: every record logged is in its file
    assert logged[1] == written[1]  # the blocking handler too (it is slow, not lossy)
    queue = re.search(r"queue: enqueued (\d+(?:,\d{3})*), dropped (\d+(?:,\d{3})*)", report)
    assert queue is not None, report
    assert logged[0] == number(queue.group(1))
    assert 0 == number(queue.group(2))
    sinks = re.findall(r"sink (\S+): written (\d+(?:,\d{3})*), dropped (\d+(?:,\d{3})*)", report)
    file_sinks = [s for s in sinks if s[0].startswith("file:")]
    assert 1 == len(file_sinks), report
    assert logged[0] == number(file_sinks[0][1])
    assert all("0" == s[2] for s in sinks), sinks
    # stderr is a pipe here: both runs' warnings are text lines alike, none is JSON.
    warnings = [line for line in proc.stderr.splitlines() if "was slow" in line]
    assert 2 <= len(warnings), proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("{")], proc.stderr
    assert 1 == len({line.split("request ")[0].split()[-1] for line in warnings}), warnings


@pytest.mark.timeout(90)
def test_benchmarks_quick_run(tmp_path: Path) -> None:
    """``python -m benchmarks --quick`` runs every setup and writes its JSON results."""
    if not (ROOT / "benchmarks" / "__main__.py").exists():
        pytest.skip("the benchmarks package is not in this tree (an sdist)")
    output = tmp_path / "quick.json"
    proc = run_module("-m", "benchmarks", "--quick", "-q", "--output", str(output), timeout=85)
    assert 0 == proc.returncode, proc.stderr
    for setup in ("disabled", "floor", "stdlib-queue", "stdlib-queue-nolistener", "aiolog"):
        assert setup in proc.stdout
    assert output.exists()
    results = json.loads(output.read_text(encoding="utf-8"))
    suite = results["loops"]["asyncio"]
    for setup in suite["skipped"]:  # a peer that is not installed is skipped, not failed
        assert setup not in suite["summary"]
    for test in ("emit", "lag"):
        entry = suite["summary"]["aiolog"][test]
        assert entry["emitted"] == entry["delivered"]
        assert 0 == entry["lost"]
    throughput = results["scenarios"]["asyncio"]["summary"]["aiolog/throughput/fast"]
    assert throughput["emitted"] == throughput["delivered"]


@pytest.mark.timeout(30)
def test_benchmarks_quick_subset_exits_0(tmp_path: Path) -> None:
    """``python -m benchmarks --quick --setups floor,aiolog`` (the smoke subset) exits 0."""
    if not (ROOT / "benchmarks" / "__main__.py").exists():
        pytest.skip("the benchmarks package is not in this tree (an sdist)")
    output = tmp_path / "subset.json"
    argv = ["-m", "benchmarks", "--quick", "-q", "--setups", "floor,aiolog"]
    proc = run_module(*argv, "--output", str(output), timeout=25)
    assert 0 == proc.returncode, proc.stderr
    results = json.loads(output.read_text(encoding="utf-8"))
    assert ["floor", "aiolog"] == list(results["loops"]["asyncio"]["summary"])
