"""``python -m benchmarks``: run the suite, record it, and optionally regenerate the docs.

Every setup runs in a fresh child process (``python -m benchmarks.worker SETUP TEST ...``),
interleaved over repetitions; the summary holds medians of the timings. The full suite runs
on asyncio's default loop and on uvloop, then the scenarios (slow and dead sinks, a TCP
peer that stops reading, drain throughput: aiolog against the stdlib queue pair) on each,
then the comparisons the targets rest on again as back-to-back pairs (see
``benchmarks.suite.run_pairs``).
Results go to ``benchmarks/results/latest.json`` (``--quick``: ``quick.json``, not recorded
in git).

    python -m benchmarks                 # full suite, both loops, ~13 min on 2 cores
    python -m benchmarks --quick         # smoke run, asyncio only, < 30 s
    python -m benchmarks --loop uvloop   # uvloop only (asyncio, uvloop or both)
    python -m benchmarks --write-docs    # full suite, then docs/benchmarks.md (+ PNG plot)
    python -m benchmarks --from-json benchmarks/results/latest.json --write-docs
    python -m benchmarks --profile       # cProfile of the emit path of aiolog and stdlib
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiolog import _bench
from benchmarks import _docs, worker
from benchmarks import suite as full

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "aiolog"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _profile(config: full.SuiteConfig, setups: list[str]) -> int:
    for setup in setups:
        argv = [*full.child_argv(setup, "emit", config), "--profile"]
        result = full.run_child(argv, config.timeout)
        print(f"==== {setup}: emit median {result['emit_median_ns']:,.0f} ns (under cProfile)")
        print(result["profile"])
    return 0


def _run_all(
    config: full.SuiteConfig, loops: list[str], scenarios: bool, progress: bool
) -> dict[str, Any]:
    """The suite on each loop, then the scenarios, then the back-to-back pairs."""
    started = time.perf_counter()
    by_loop: dict[str, Any] = {}
    scen: dict[str, Any] = {}
    pairs: dict[str, Any] = {}
    with _bench.status(progress) as show:
        for loop in loops:
            per_loop = full.SuiteConfig(**{**asdict(config), "loop": loop})
            by_loop[loop] = full.run_suite(
                per_loop, lambda text, loop=loop: show(f"{loop}: {text}")
            )
        if scenarios:
            for loop in loops:
                per_loop = full.SuiteConfig(**{**asdict(config), "loop": loop})
                scen[loop] = full.run_scenarios(
                    per_loop, lambda text, loop=loop: show(f"{loop}: {text}")
                )
        for loop in loops:
            per_loop = full.SuiteConfig(**{**asdict(config), "loop": loop})
            pairs[loop] = full.run_pairs(per_loop, lambda text, loop=loop: show(f"{loop}: {text}"))
    first = by_loop[loops[0]]
    return {
        "config": first["config"],
        "machine": {**first["machine"], "loop": ", ".join(loops)},
        "loops": by_loop,
        "scenarios": scen,
        "pairs": pairs,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def report(results: dict[str, Any]) -> str:
    """The text report: per loop the emit and lag tables, the scenarios, the targets."""
    parts = []
    for loop, suite in results["loops"].items():
        parts += [f"==== {loop} loop", "", _bench.format_tables(suite), ""]
        line = _bench.verdict(suite["summary"])
        if line:
            parts += [line, ""]
        for name, note in suite.get("skipped", {}).items():
            parts.append(f"{name}: {note}")
        scen = results.get("scenarios", {}).get(loop)
        if scen and scen["setups"]:
            parts += [full.format_scenarios(scen), ""]
    summaries = {loop: suite["summary"] for loop, suite in results["loops"].items()}
    rows = full.targets(summaries, results.get("scenarios", {}), results.get("pairs"))
    if rows:
        parts += [_bench.table(full.TARGET_HEADER, rows, markdown=False), ""]
    parts.append("Machine: " + _bench.format_machine(results["machine"]))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 5; --quick: 1)")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "both"),
        help="event loop(s) (default: both; --quick: asyncio)",
    )
    parser.add_argument(
        "--no-scenarios", action="store_true", help="skip the slow/dead/stalled sink and drain runs"
    )
    parser.add_argument("--setups", help="comma-separated subset of: " + ", ".join(worker.SETUPS))
    parser.add_argument("--output", type=Path, help="results JSON (default results/latest.json)")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/benchmarks.md")
    parser.add_argument(
        "--from-json", type=Path, metavar="PATH", help="report on saved results, do not run"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the emit path instead")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    config = full.SuiteConfig(**asdict(full.PRESETS["quick" if args.quick else "full"]))
    if args.reps is not None:
        config.reps = max(1, args.reps)
    loop_choice = args.loop or ("asyncio" if args.quick else "both")
    loops = ["asyncio", "uvloop"] if loop_choice == "both" else [loop_choice]
    config.loop = loops[0]
    if args.setups:
        chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in worker.SETUPS]
        if unknown:
            parser.error(f"unknown setup(s): {', '.join(unknown)}")
        config.setups = chosen
    if args.profile:
        setups = config.setups if args.setups else ["stdlib-queue", "aiolog"]
        return _profile(config, setups)

    results: dict[str, Any]
    output: Path | None = None
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        results = _run_all(config, loops, not args.no_scenarios, not args.quiet)
        results["machine"]["git_commit"] = _git_commit()
        results["preset"] = "quick" if args.quick else "full"
        output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print(report(results))
    if output is not None:
        print(f"Results: {output}")
    if args.write_docs:
        written = _docs.write_docs(results, ROOT / "docs")
        for path in written:
            print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
