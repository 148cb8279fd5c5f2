"""The full suite's driver: the peers, the scenarios, the paired runs and the targets.

Built on :mod:`aiolog._bench` (the core that ``python -m aiolog bench`` runs): every child
is ``python -m benchmarks.worker SETUP TEST ...`` (:mod:`benchmarks.worker`). The tables
of the scenarios and the targets table live here, since only the recorded results
(``benchmarks/results/``, ``docs/benchmarks.md``) show them.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiolog import _bench, _bench_worker
from aiolog._bench import cell, counts, rotate, table
from benchmarks.worker import (
    DEAD_RECORDS,
    PEERS,
    SCENARIO_SETUPS,
    SETUPS,
    SINKS,
    SLOW_WRITE_S,
    STALL_SINKS,
    STOP_CAP_S,
    STOP_TIMEOUT_S,
)

ROOT = str(Path(__file__).resolve().parent.parent)

#: What "memory stays bounded" means in the targets table: aiolog's queue and sink buffer
#: hold 10 000 records each by default, far below this peak resident size.
RSS_BOUND_MB = 200


@dataclass
class SuiteConfig(_bench.SuiteConfig):
    """The core's sizes, every setup, and how much of the scenarios and pairs to run."""

    setups: list[str] = field(default_factory=lambda: list(SETUPS))
    #: Scenarios (:func:`run_scenarios`): repetitions of the emit and lag tests per sink,
    #: the sinks they run with, the sinks of the dead test and its records, records for
    #: the throughput test.
    scenario_reps: int = 2
    scenario_sinks: list[str] = field(default_factory=lambda: list(SINKS))
    dead_sinks: list[str] = field(default_factory=lambda: list(STALL_SINKS))
    dead_n: int = DEAD_RECORDS
    dead_reps: int = 1
    throughput_n: int = 100_000
    throughput_reps: int = 3
    stop_cap: float = STOP_CAP_S
    #: Back-to-back pairs (:func:`run_pairs`) per comparison the targets rest on.
    pair_reps: int = 0


#: ``full``: the recorded suite; ``quick``: a smoke run.
PRESETS: dict[str, SuiteConfig] = {
    "full": SuiteConfig(
        reps=3, emit_rounds=2, emit_n=10_000, warmup=1_000, seconds=1.5, pair_reps=6
    ),
    "quick": SuiteConfig(
        reps=1,
        emit_rounds=1,
        emit_n=2_000,
        warmup=200,
        seconds=0.5,
        scenario_reps=0,
        dead_n=20_000,
        throughput_n=10_000,
        throughput_reps=1,
        stop_cap=1.0,
    ),
}

#: The comparisons the targets rest on: ``(name, test, metric, reference, subject)``,
#: each side a ``(setup, sink)``. :func:`run_pairs` runs each as back-to-back pairs.
PAIRED: tuple[tuple[str, str, str, tuple[str, str], tuple[str, str]], ...] = (
    ("emit vs floor", "emit", "emit_median_ns", ("floor", "fast"), ("aiolog", "fast")),
    (
        "lag vs control",
        "lag",
        "lag_p99_ms",
        ("stdlib-queue-nolistener", "fast"),
        ("aiolog", "fast"),
    ),
    *(
        (f"emit {sink} vs fast", "emit", "emit_median_ns", ("aiolog", "fast"), ("aiolog", sink))
        for sink in SINKS
        if sink != "fast"
    ),
)


def child_argv(setup: str, test: str, config: _bench.SuiteConfig) -> list[str]:
    """The command line of one child of the full suite."""
    argv = _bench.child_argv(setup, test, config, worker="benchmarks.worker")
    if isinstance(config, SuiteConfig):
        argv.append(f"--stop-cap={config.stop_cap}")
    return argv


def run_child(argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """One child, run from the repository root (where ``benchmarks`` is importable)."""
    return _bench.run_child(argv, timeout, cwd=ROOT)


def missing_peers(setups: Sequence[str]) -> dict[str, str]:
    """The setups whose peer package is not installed: setup -> note."""
    return {
        name: f"skipped: {PEERS[name]} is not installed"
        for name in setups
        if name in PEERS and importlib.util.find_spec(PEERS[name]) is None
    }


def run_suite(config: SuiteConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`aiolog._bench.run_suite` over every setup, the peers included."""
    return _bench.run_suite(
        config,
        progress,
        argv=child_argv,
        descriptions=SETUPS,
        skipped=missing_peers(config.setups),
        cwd=ROOT,
    )


def run_scenarios(
    config: SuiteConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """aiolog against the stdlib queue pair when the sink is slow, dead or its peer stalled,
    and drain speed.

    ``sinks``: the emit and lag tests with each of ``config.scenario_sinks`` behind the
    queue (interleaved, ``scenario_reps`` times); ``dead``: ``dead_n`` records into each
    of ``config.dead_sinks``; ``throughput``: ``throughput_n`` records as fast as possible,
    timed to the end of the drain. Only the :data:`SCENARIO_SETUPS` in ``config.setups``
    run.
    """
    setups = [name for name in SCENARIO_SETUPS if name in config.setups]
    if config.loop == "uvloop" and not _bench_worker.has_uvloop():
        setups = []
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()

    def run(setup: str, test: str, extra: list[str], rep: int) -> None:
        if progress is not None:
            progress(f"scenario rep {rep + 1}  {setup:<14} {test} {' '.join(extra)}")
        result = run_child([*child_argv(setup, test, config), *extra], config.timeout)
        result.update(rep=rep)
        runs.append(result)

    for rep in range(config.scenario_reps):
        for test in _bench_worker.TESTS:
            for k, sink in enumerate(config.scenario_sinks):
                for setup in rotate(setups, rep + k):
                    run(setup, test, [f"--sink={sink}"], rep)
    for rep in range(config.dead_reps):
        for k, sink in enumerate(config.dead_sinks):
            for setup in rotate(setups, rep + k):
                run(setup, "dead", [f"--sink={sink}", f"--n={config.dead_n}"], rep)
    for rep in range(config.throughput_reps):
        for setup in rotate(setups, rep):
            size = f"--queue-size={config.throughput_n + 1000}"
            run(setup, "throughput", [f"--n={config.throughput_n}", size], rep)
    return {
        "setups": setups,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "summary": summarise_scenarios(runs),
        "runs": runs,
    }


def run_pairs(config: SuiteConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The comparisons of :data:`PAIRED`, as back-to-back pairs of runs.

    On a shared machine a busy neighbour slows whole stretches of seconds, and a single
    run lands in one by chance; runs of the suite that are compared sit seconds apart.
    Here the two sides of each comparison run one right after the other (the order
    alternating), ``config.pair_reps`` times, and the target uses the median of the
    per-pair ratios, which such stretches move far less. Returns, per comparison, the
    ratios, their median and the medians of each side.
    """
    out: dict[str, Any] = {}
    if config.pair_reps < 1 or (config.loop == "uvloop" and not _bench_worker.has_uvloop()):
        return out
    for name, test, metric, reference, subject in PAIRED:
        if reference[0] not in config.setups or subject[0] not in config.setups:
            continue
        values: dict[tuple[str, str], list[float]] = {reference: [], subject: []}
        ratios: list[float] = []
        for rep in range(config.pair_reps):
            got: dict[tuple[str, str], float] = {}
            for setup, sink in (reference, subject) if rep % 2 == 0 else (subject, reference):
                if progress is not None:
                    progress(f"pair {rep + 1}/{config.pair_reps}  {name}: {setup} ({sink})")
                argv = [*child_argv(setup, test, config), f"--sink={sink}"]
                got[(setup, sink)] = float(run_child(argv, config.timeout)[metric])
            values[reference].append(got[reference])
            values[subject].append(got[subject])
            if got[reference]:
                ratios.append(got[subject] / got[reference])
        out[name] = {
            "metric": metric,
            "ratios": ratios,
            "ratio": statistics.median(ratios) if ratios else None,
            "reference": statistics.median(values[reference]),
            "subject": statistics.median(values[subject]),
        }
    return out


_SCENARIO_KEYS = (
    "emit_median_ns",
    "emit_p99_ns",
    "emit_cpu_ns",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "lag_tw_mean_ms",
    "lag_tw_p99_ms",
    "rate_achieved",
    "stop_s",
    "peak_rss_mb",
    "records_per_s",
    "cpu_us_per_record",
    "loop_cpu_us_per_record",
    "other_cpu_us_per_record",
    "elapsed_s",
    "drain_ms",
)


def summarise_scenarios(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per ``"setup/test/sink"``: medians of the figures, totals of counts, max of memory."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(f"{r['setup']}/{r['test']}/{r['sink']}", []).append(r)
    summary: dict[str, Any] = {}
    for key, mine in groups.items():
        entry: dict[str, Any] = {"runs": len(mine), "emitted": sum(r["emitted"] for r in mine)}
        for name in _SCENARIO_KEYS:
            values = [r[name] for r in mine if r.get(name) is not None]
            entry[name] = statistics.median(values) if values else None
        rss = [r["peak_rss_mb"] for r in mine if r.get("peak_rss_mb") is not None]
        entry["peak_rss_mb_max"] = max(rss) if rss else None
        returned = [r["stop_returned"] for r in mine if "stop_returned" in r]
        entry["stop_returned"] = all(returned) if returned else None
        entry["stop_s_max"] = max((r["stop_s"] for r in mine if "stop_s" in r), default=None)
        for name in ("delivered", "lost"):
            values = [r[name] for r in mine]
            entry[name] = None if any(v is None for v in values) else sum(values)
        summary[key] = entry
    return summary


def _scenario(summary: dict[str, Any], setup: str, test: str, sink: str) -> dict[str, Any]:
    entry: dict[str, Any] = summary.get(f"{setup}/{test}/{sink}", {})
    return entry


def _stop_cell(entry: dict[str, Any]) -> str:
    if entry.get("stop_s_max") is None:
        return "-"
    shown = f"{entry['stop_s_max']:.2f}"
    return shown if entry.get("stop_returned") else f"> {shown} (blocked)"


def format_scenarios(scenarios: dict[str, Any], markdown: bool = False) -> str:
    """The scenario tables: slow, dead and stalled sinks, the stalled ones at volume, drain
    throughput.
    """
    summary = scenarios["summary"]
    setups = scenarios["setups"]
    parts: list[str] = []

    def title(text: str) -> None:
        parts.extend([f"### {text}" if markdown else text, ""])

    rows = []
    for sink in SINKS:
        for setup in setups:
            e, lag = _scenario(summary, setup, "emit", sink), _scenario(summary, setup, "lag", sink)
            if not e and not lag:
                continue
            delivered, lost = counts(e) if e else ("-", "-")
            rows.append(
                [
                    f"{setup} / {sink}",
                    cell(e.get("emit_median_ns")),
                    cell(e.get("emit_cpu_ns")),
                    cell(lag.get("lag_p99_ms"), 3),
                    cell(lag.get("lag_tw_p99_ms"), 3),
                    cell(lag.get("rate_achieved")),
                    _stop_cell(e),
                    _stop_cell(lag),
                    cell(max(e.get("peak_rss_mb_max") or 0, lag.get("peak_rss_mb_max") or 0), 1),
                    delivered,
                    lost,
                ]
            )
    if rows:
        title(
            f"Slow, dead and stalled sinks: emit cost and loop lag with each sink behind the "
            f"queue (fast: JSON file; slow: {SLOW_WRITE_S * 1e3:g} ms per write; dead: never "
            "returns; stalled-peer: JSON lines over TCP to a peer that stops reading), "
            "median of the runs"
        )
        header: tuple[str, ...] = (
            "setup / sink",
            "emit ns",
            "loop CPU ns",
            "lag p99 ms",
            "lag tw p99 ms",
            "records/s",
            "stop s (emit run)",
            "stop s (lag run)",
            "peak RSS MiB",
            "delivered (emit)",
            "lost",
        )
        parts += [table(header, rows, markdown), ""]

    rows = []
    dead = [
        (sink, setup, _scenario(summary, setup, "dead", sink))
        for sink in STALL_SINKS
        for setup in setups
    ]
    for sink, setup, e in dead:
        if not e:
            continue
        delivered, lost = counts(e)
        rows.append(
            [
                f"{setup} / {sink}",
                cell(e.get("emit_median_ns")),
                cell(e.get("emit_cpu_ns")),
                cell(e.get("peak_rss_mb_max"), 1),
                _stop_cell(e),
                delivered,
                lost,
            ]
        )
    if rows:
        n = max(e.get("emitted", 0) // max(e.get("runs", 1), 1) for _, _, e in dead)
        title(
            f"Stalled sinks at volume: {n:,} records into a sink that never returns (dead) "
            "or a TCP peer that stops reading (stalled-peer)"
        )
        header = (
            "setup / sink",
            "emit ns",
            "loop CPU ns",
            "peak RSS MiB",
            "stop s",
            "delivered",
            "lost",
        )
        parts += [table(header, rows, markdown), ""]

    rows = []
    for setup in setups:
        e = _scenario(summary, setup, "throughput", "fast")
        if not e:
            continue
        delivered, lost = counts(e)
        rows.append(
            [
                setup,
                cell(e.get("records_per_s")),
                cell(e.get("cpu_us_per_record"), 2),
                cell(e.get("loop_cpu_us_per_record"), 2),
                cell(e.get("other_cpu_us_per_record"), 2),
                cell(e.get("elapsed_s"), 2),
                cell(e.get("drain_ms"), 0),
                cell(e.get("peak_rss_mb_max"), 1),
                delivered,
                lost,
            ]
        )
    if rows:
        e0 = _scenario(summary, setups[0], "throughput", "fast")
        per_run = e0.get("emitted", 0) // max(e0.get("runs", 1), 1)
        title(
            f"Drain throughput: {per_run:,} records logged as fast as possible into a JSON "
            "lines file, timed from the first call until the flush returns, median of "
            f"{e0.get('runs', 1)} run(s)"
        )
        header = (
            "setup",
            "records/s",
            "CPU µs/rec (all threads)",
            "loop thread",
            "other threads",
            "elapsed s",
            "drain after last call ms",
            "peak RSS MiB",
            "delivered",
            "lost",
        )
        parts += [table(header, rows, markdown), ""]
    return "\n".join(parts).rstrip()


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def targets(
    summaries: dict[str, dict[str, Any]],
    scenarios: dict[str, dict[str, Any]],
    pairs: dict[str, dict[str, Any]] | None = None,
) -> list[list[str]]:
    """The targets against the figures, per loop: ``[target, loop, measured, met]``.

    Where :func:`run_pairs` measured a comparison (``pairs``), its paired ratio decides;
    otherwise the ratio of the suite's medians does.
    """
    rows: list[list[str]] = []

    def add(target: str, loop: str, measured: str, met: bool | None) -> None:
        rows.append([target, loop, measured, "-" if met is None else ("yes" if met else "NO")])

    for loop, summary in summaries.items():
        paired = (pairs or {}).get(loop, {})

        def compare(
            target: str,
            pair: str | None,
            subject: float | None,
            reference: float | None,
            limit: float,
            unit: str,
            paired: dict[str, Any] = paired,
            loop: str = loop,
        ) -> None:
            """A row for ``subject / reference <= limit``: paired ratio if measured."""
            fmt = "{:,.0f} vs {:,.0f} ns" if unit == "ns" else "{:.3f} vs {:.3f} ms"
            entry = paired.get(pair) if pair else None
            if entry and entry.get("ratio") is not None:
                ratio = entry["ratio"]
                measured = fmt.format(entry["subject"], entry["reference"]) + (
                    f"; {ratio:.2f}x, median of {len(entry['ratios'])} back-to-back pairs"
                )
            else:
                ratio = _ratio(subject, reference)
                if ratio is None:
                    return
                measured = fmt.format(subject, reference) + f" ({ratio:.2f}x)"
            add(target, loop, measured, ratio <= limit)

        def fig(setup: str, test: str, key: str, summary: dict[str, Any] = summary) -> Any:
            return summary.get(setup, {}).get(test, {}).get(key)

        compare(
            "emit cost <= floor (list-append handler)",
            "emit vs floor",
            fig("aiolog", "emit", "emit_median_ns"),
            fig("floor", "emit", "emit_median_ns"),
            1.0,
            "ns",
        )
        vs = fig("aiolog", "emit", "vs_reference")
        if vs is not None:
            add("emit cost <= 0.6x stdlib-queue", loop, f"{vs:.3f}x (paired runs)", vs <= 0.6)
        compare(
            "lag p99 <= 1.1x stdlib-queue-nolistener",
            "lag vs control",
            fig("aiolog", "lag", "lag_p99_ms"),
            fig("stdlib-queue-nolistener", "lag", "lag_p99_ms"),
            1.1,
            "ms",
        )
        scen = scenarios.get(loop, {}).get("summary", {})
        ours = _scenario(scen, "aiolog", "throughput", "fast")
        theirs = _scenario(scen, "stdlib-queue", "throughput", "fast")
        ratio = _ratio(ours.get("records_per_s"), theirs.get("records_per_s"))
        if ratio is not None:
            cpu = _ratio(theirs.get("cpu_us_per_record"), ours.get("cpu_us_per_record")) or 0
            add(
                "drain throughput >= 2x stdlib QueueListener",
                loop,
                f"{ours['records_per_s']:,.0f} vs {theirs['records_per_s']:,.0f} rec/s "
                f"({ratio:.2f}x); CPU per record {cpu:.2f}x less",
                ratio >= 2.0,
            )
        fast = _scenario(scen, "aiolog", "emit", "fast")
        impaired = [sink for sink in SINKS if sink != "fast"]
        lag_fast = _scenario(scen, "aiolog", "lag", "fast")
        for sink in impaired:
            compare(
                f"{sink} sink: emit within 10% of fast sink",
                f"emit {sink} vs fast",
                _scenario(scen, "aiolog", "emit", sink).get("emit_median_ns"),
                fast.get("emit_median_ns"),
                1.1,
                "ns",
            )
            compare(
                f"{sink} sink: lag p99 within 10% of fast sink",
                None,
                _scenario(scen, "aiolog", "lag", sink).get("lag_p99_ms"),
                lag_fast.get("lag_p99_ms"),
                1.1,
                "ms",
            )
        for sink in STALL_SINKS:
            dead = _scenario(scen, "aiolog", "dead", sink)
            std = _scenario(scen, "stdlib-queue", "dead", sink)
            if not dead:
                continue
            per_run = dead["emitted"] // max(dead["runs"], 1)
            other = (
                f"; stdlib-queue {std['peak_rss_mb_max']:,.0f} MiB"
                if std.get("peak_rss_mb_max")
                else ""
            )
            add(
                f"memory bounded ({per_run:,} records, {sink} sink; < {RSS_BOUND_MB} MiB)",
                loop,
                f"aiolog peak RSS {dead['peak_rss_mb_max']:,.0f} MiB{other}",
                dead["peak_rss_mb_max"] < RSS_BOUND_MB,
            )
        stops = [
            _scenario(scen, "aiolog", test, sink)
            for test in ("emit", "lag", "dead")
            for sink in impaired
        ]
        worst = max(
            (e["stop_s_max"] for e in stops if e.get("stop_s_max") is not None), default=None
        )
        if worst is not None:
            std_stop = [
                _scenario(scen, "stdlib-queue", test, sink)
                for test in ("emit", "lag", "dead")
                for sink in impaired
            ]
            blocked = sum(1 for e in std_stop if e and not e.get("stop_returned"))
            add(
                f"stop(timeout={STOP_TIMEOUT_S:g}) returns within its timeout (+0.25 s)",
                loop,
                f"aiolog worst {worst:.2f} s; stdlib stop() blocked in {blocked} "
                f"of {sum(1 for e in std_stop if e)} stalled scenarios",
                worst <= STOP_TIMEOUT_S + 0.25,
            )
    return rows


TARGET_HEADER = ("target", "loop", "measured", "met")
