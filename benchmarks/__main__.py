"""``python -m benchmarks``: run the suite, record it, and optionally regenerate the docs.

Every setup runs in a fresh child process (``python -m aiolog._bench SETUP TEST ...``),
interleaved over repetitions; the summary holds medians of the timings. Results go to
``benchmarks/results/latest.json`` (``--quick``: ``quick.json``, not recorded in git).

    python -m benchmarks                 # full suite, ~1.5 min on 2 cores
    python -m benchmarks --quick         # smoke run, a few seconds
    python -m benchmarks --write-docs    # full suite, then docs/benchmarks.md (+ PNG plot)
    python -m benchmarks --from-json benchmarks/results/latest.json --write-docs
    python -m benchmarks --profile       # cProfile of the emit path of aiolog and stdlib
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiolog import _bench
from benchmarks import _docs

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


def _profile(config: _bench.SuiteConfig, setups: list[str]) -> int:
    for setup in setups:
        argv = [*_bench.child_argv(setup, "emit", config), "--profile"]
        result = _bench.run_child(argv, config.timeout)
        print(f"==== {setup}: emit median {result['emit_median_ns']:,.0f} ns (under cProfile)")
        print(result["profile"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 5; --quick: 1)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--setups", help="comma-separated subset of: " + ", ".join(_bench.SETUPS))
    parser.add_argument("--output", type=Path, help="results JSON (default results/latest.json)")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/benchmarks.md")
    parser.add_argument(
        "--from-json", type=Path, metavar="PATH", help="report on saved results, do not run"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the emit path instead")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    config = _bench.SuiteConfig(**asdict(_bench.PRESETS["quick" if args.quick else "full"]))
    if args.reps is not None:
        config.reps = max(1, args.reps)
    config.loop = args.loop
    if args.setups:
        chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in _bench.SETUPS]
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
        with _bench._status(not args.quiet) as show:
            results = _bench.run_suite(config, show)
        results["machine"]["git_commit"] = _git_commit()
        results["preset"] = "quick" if args.quick else "full"
        output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print(_bench.format_tables(results))
    print()
    print("Machine:", _bench.format_machine(results["machine"]))
    line = _bench.verdict(results["summary"])
    if line:
        print(line)
    if output is not None:
        print(f"Results: {output}")
    if args.write_docs:
        written = _docs.write_docs(results, ROOT / "docs")
        for path in written:
            print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
