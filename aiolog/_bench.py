"""``python -m aiolog bench``: what logging costs the event loop, measured on this machine.

Each measurement runs in a fresh child process (:mod:`aiolog._bench_worker`, which
describes the ``emit`` and ``lag`` tests), the setups interleaved over repetitions;
:func:`run_suite` drives the children and summarises them by medians (timings) and totals
(counts, so that a loss in one run is never hidden), :func:`format_tables` prints the
summary. This is the core run users can make: the stdlib references and aiolog. The
repository's ``benchmarks`` package builds the full, recorded suite on it (peers such as
loguru or structlog, slow and stalled sinks, the targets); it imports these modules, never
the reverse.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiolog._bench_worker import SETUPS, TESTS, has_uvloop

__all__ = [
    "PRESETS",
    "SuiteConfig",
    "add_arguments",
    "child_argv",
    "format_tables",
    "machine_info",
    "main",
    "run_child",
    "run_suite",
    "summarise",
]


@dataclass
class SuiteConfig:
    """How much to measure. The presets in :data:`PRESETS` are the usual choices."""

    reps: int = 5
    #: Emit runs per setup per repetition: they are short, and a shared machine's noise
    #: (a busy neighbour on the same core) moves single runs noticeably.
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


#: ``user``: ``python -m aiolog bench`` (about 30 s on 2 cores); ``quick``: a smoke run.
PRESETS: dict[str, SuiteConfig] = {
    "user": SuiteConfig(reps=3, emit_rounds=2, emit_n=10_000, warmup=1_000, seconds=1.0),
    "quick": SuiteConfig(reps=1, emit_rounds=1, emit_n=2_000, warmup=200, seconds=0.5),
}


# ---------------------------------------------------------------------------- the driver


def child_argv(
    setup: str, test: str, config: SuiteConfig, worker: str = "aiolog._bench_worker"
) -> list[str]:
    """The command line of one child process: ``python -m WORKER SETUP TEST ...``."""
    return [
        sys.executable,
        "-m",
        worker,
        setup,
        test,
        f"--n={config.emit_n}",
        f"--warmup={config.warmup}",
        f"--burst={config.burst}",
        f"--pause={config.pause}",
        f"--rate={config.rate}",
        f"--seconds={config.seconds}",
        f"--loop={config.loop}",
    ]


def run_child(argv: Sequence[str], timeout: float, cwd: str | None = None) -> dict[str, Any]:
    """Run one worker process; return its JSON result (raise ``RuntimeError`` on failure)."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
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


def rotate(setups: list[str], rep: int) -> list[str]:
    """Rotate the setup order each repetition, so no setup always runs first or last."""
    k = rep % len(setups)
    return setups[k:] + setups[:k]


def run_suite(
    config: SuiteConfig,
    progress: Callable[[str], None] | None = None,
    *,
    argv: Callable[[str, str, SuiteConfig], list[str]] = child_argv,
    descriptions: Mapping[str, str] = SETUPS,
    skipped: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Run every (setup, test) ``config.reps`` times, each in a fresh process.

    Returns ``{"config", "machine", "setups", "skipped", "runs", "summary"}``; ``summary``
    holds, per setup and test, the median of each timing over the repetitions and the totals
    of the counts (a loss in one repetition is never hidden by a median). ``argv`` builds
    a child's command line, ``descriptions`` names the setups; the setups in ``skipped``
    (setup -> why) are left out and named in the result.
    """
    skipped = dict(skipped or {})
    if config.loop == "uvloop" and not has_uvloop():
        skipped = dict.fromkeys(config.setups, "skipped: uvloop is not installed")
    config = dataclasses.replace(config, setups=[s for s in config.setups if s not in skipped])
    runs: list[dict[str, Any]] = []
    load_before = _loadavg()
    started = time.perf_counter()
    # The emit runs of one repetition follow each other within seconds, so the setups are
    # compared under the same machine conditions (a busy neighbour slows a whole stretch).
    for rep in range(config.reps):
        for test in TESTS:
            rounds = config.emit_rounds if test == "emit" else 1
            for round_ in range(rounds):
                for setup in rotate(config.setups, rep + round_):
                    if progress is not None:
                        progress(f"rep {rep + 1}/{config.reps}  {setup:<24} {test}")
                    result = run_child(argv(setup, test, config), config.timeout, cwd)
                    result.update(rep=rep, round=round_)
                    runs.append(result)
    return {
        "config": asdict(config),
        "machine": machine_info(config.loop),
        "setups": {name: descriptions[name] for name in config.setups},
        "skipped": skipped,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "loadavg": {"before": load_before, "after": _loadavg()},
        "summary": summarise(runs, config.setups),
        "runs": runs,
    }


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


def cell(value: Any, digits: int = 0) -> str:
    """A table cell: the number with thousands separators, ``-`` for none or NaN."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def counts(entry: dict[str, Any]) -> tuple[str, str]:
    """The *delivered* (out of emitted) and *lost* cells of a summary entry."""
    delivered = entry.get("delivered")
    shown = "-" if delivered is None else f"{delivered:,}/{entry['emitted']:,}"
    return shown, cell(entry.get("lost"))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """The rows under the header, as aligned text or as a Markdown table."""
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
        delivered, lost = counts(e)
        rows.append(
            [
                setup,
                cell(e["emit_median_ns"]),
                cell(e.get("emit_best_run_ns")),
                cell(e["emit_p90_ns"]),
                cell(e["emit_p99_ns"]),
                cell(e.get("emit_cpu_ns")),
                "-" if e.get("vs_reference") is None else f"{e['vs_reference']:.2f}x",
                delivered,
                lost,
                cell(e["drain_ms"], 1),
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
        delivered, lost = counts(e)
        rows.append(
            [
                setup,
                cell(e["lag_p50_ms"], 3),
                cell(e["lag_p99_ms"], 3),
                cell(e["lag_max_ms"], 2),
                cell(e.get("lag_tw_mean_ms"), 3),
                cell(e.get("lag_tw_p99_ms"), 3),
                cell(e["rate_achieved"]),
                cell(e.get("loop_cpu_us_per_record"), 1),
                delivered,
                lost,
                cell(e["drain_ms"], 1),
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
        table(EMIT_HEADER, emit_rows(summary), markdown),
        "",
        lag_title,
        "",
        table(LAG_HEADER, lag_rows(summary), markdown),
    ]
    return "\n".join(parts)


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
def status(enabled: bool) -> Iterator[Callable[[str], None]]:
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
    """``python -m aiolog bench``: the core suite (about 30 s), on this machine."""
    config = dataclasses.replace(PRESETS["quick" if args.quick else "user"])
    if args.reps is not None:
        config.reps = max(1, args.reps)
    config.loop = args.loop
    with status(not args.quiet) as show:
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
