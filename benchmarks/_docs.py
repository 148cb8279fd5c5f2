"""Regenerate ``docs/benchmarks.md`` (and its ``docs/benchmarks-*.png`` plots) from results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiolog import _bench
from benchmarks import suite as full
from benchmarks import worker

PLOT_NAME = "benchmarks-emit.png"
LAG_PLOT_NAME = "benchmarks-lag.png"
SCENARIO_PLOT_NAME = "benchmarks-scenarios.png"

_METHOD = """\
## What is measured

Each setup runs in a fresh child process (`python -m benchmarks.worker SETUP TEST`), the
setups interleaved (their order rotates from one repetition to the next); the tables show
the **median over the runs** ({reps} repetition(s)) of each figure, and the **totals** of
the counts. Records go through the logger `bench`, which propagates to the root logger,
where each setup installs its handler.

**Emit cost.** Inside a task of a running `{loop}` loop, `logger.info("msg %s %d", "x", i)`
is timed call by call with `time.perf_counter_ns()` ({emit_n:,} calls after {warmup:,}
warm-up calls), minus the median cost of an empty timed block. Calls come in bursts of
{burst} with a {pause_ms:g} ms sleep between bursts, like an application that logs while it
works, so the listener threads get to run. The figure is what the *loop thread* pays per
call; the formatting and writing done by a listener thread is not in it, except where that
thread holds the GIL while the loop thread wants it (that shows in p99).

**Loop lag.** A producer task logs {rate:,} records/s for {seconds:g} s (a burst every
millisecond, sized to keep the rate) while a ticker task sleeps 1 ms over and over and
records how late it wakes up. The first {settle_ms:g} ms are not counted. p50, p99 and max
count each tick once, so a long stall is one sample however long it lasted; the
*time-weighted* (*tw*) figures weigh each tick's lag by the wall time the tick covered
(1 ms plus its lag), so *tw p99* is the lag below which 99% of the run's time was spent.

**Reading the figures.** Timings on a shared machine drift (a busy neighbour on the same
core slows a whole process by up to 1.6x), so each repetition runs the emit test
{emit_rounds} time(s) per setup, in rotating order; *vs {reference}* is the median of
the ratios between runs made side by side, *best run* the lowest per-run median. `floor`
and `stdlib-queue-nolistener` keep every record in memory: their *max* lag includes the
garbage collector's full passes over them, not logging as such.

**CPU.** *loop CPU* is `time.thread_time_ns()` of the loop thread around each burst,
per call; for the awaited setups (`structlog-ainfo`, `aiologger`) the emit figure is the
time the task waits for `await`, and *loop CPU* what the loop itself spends, the rest
being done by worker threads. The lag table's *loop CPU µs/rec* is the loop thread's CPU
over the whole producer run, per record. A setup that cannot keep up shows it in
*records/s* (below the target rate): the lag test never drops its rate silently.

**Counts.** After the last record the run waits until everything is written (for aiolog
`pipeline.flush()`, for the stdlib `QueueListener.stop()`); that wait is *drain*. Then the
lines of the output file are counted (*delivered*, out of the records emitted) and, for
aiolog, the records its counters report as dropped (*lost*). `-` means "does not apply".
"""

_SETUP_NOTES = {
    "disabled": "what a filtered-out call costs: the baseline of the loop",
    "floor": "the cost of making a `LogRecord` and calling one handler: no handler beats it",
    "stdlib-queue": "`QueueHandler.prepare()` formats the message and copies the record on "
    "the loop thread; a `logging.Formatter` subclass writes `json.dumps` lines",
    "stdlib-queue-nolistener": "the same emit path with nothing draining the queue: "
    "the stdlib emit cost without a listener thread competing for the GIL",
    "aiolog": "copy of the record, asyncio context capture (task, coroutine, contextvars), "
    "bounded queue; JSON formatting and the file writes happen in the listener thread",
    "stdlib-file": "formatting and the `write()` system call on the loop thread: cheap on a "
    "page cache, a stall per record on a slow disk",
    "structlog-default": "structlog out of the box (`ConsoleRenderer`), rendering and "
    "writing on the caller",
    "structlog-ainfo": "structlog's async methods: the processor chain runs in the default "
    "thread pool and the task awaits it; the loop pays the hand-off",
    "loguru-enqueue": "loguru serialises on the caller and puts the text on a "
    "`multiprocessing.SimpleQueue` (a pipe and a lock), its worker thread writes",
    "aiologger": "each call creates a task; the awaited handler writes through aiofiles "
    "(a thread pool); arguments must be a mapping, so the format is `%(s)s %(i)d`",
}


def _load(results: dict[str, Any], when: str) -> str:
    values = (results.get("loadavg") or {}).get(when)
    return "unknown" if not values else ", ".join(f"{v:g}" for v in values)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


_LOOP_COLORS = {"asyncio": "#7f7f7f", "uvloop": "#1f77b4"}


def _grouped_bars(
    results: dict[str, Any],
    path: Path,
    test: str,
    key: str,
    xlabel: str,
    title: str,
    label: str,
) -> bool:
    """Horizontal bars, one per setup and loop, log scale; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    loops = list(results["loops"])
    names: list[str] = []
    for suite in results["loops"].values():
        names += [n for n in suite["summary"] if n not in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) * len(loops) + 1.2), dpi=110)
    height = 0.8 / len(loops)
    for k, loop in enumerate(loops):
        summary = results["loops"][loop]["summary"]
        ys, values = [], []
        for i, name in enumerate(names):
            value = summary.get(name, {}).get(test, {}).get(key)
            if value:
                ys.append(i + k * height)
                values.append(value)
        colors = [
            "#d62728" if names[round(y - k * height)] == "aiolog" and k == 0 else None for y in ys
        ]
        bars = ax.barh(
            ys,
            values,
            height=height,
            color=[c or _LOOP_COLORS.get(loop, "#2ca02c") for c in colors],
            label=loop,
        )
        ax.bar_label(bars, labels=[label.format(v) for v in values], padding=3, fontsize=7)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    machine = results["machine"]
    ax.set_title(f"{title} - Python {machine['python']}, {machine['cpus']} CPUs", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _scenario_plot(results: dict[str, Any], path: Path) -> bool:
    """Peak memory with a stalled sink and time to stop, aiolog vs stdlib, per loop."""
    plt = _pyplot()
    scenarios = results.get("scenarios") or {}
    if plt is None or not scenarios:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=110)
    labels, rss, stop, colors, blocked = [], [], [], [], []
    for loop, scen in scenarios.items():
        for sink in worker.STALL_SINKS:
            for setup in scen["setups"]:
                entry = scen["summary"].get(f"{setup}/dead/{sink}")
                if not entry:
                    continue
                labels.append(f"{setup}\n{sink}\n{loop}")
                rss.append(entry["peak_rss_mb_max"] or 0)
                stop.append(entry["stop_s_max"] or 0)
                blocked.append(not entry.get("stop_returned"))
                colors.append("#d62728" if setup == "aiolog" else "#7f7f7f")
    if not labels:
        plt.close(fig)
        return False
    n = next(iter(scenarios.values()))["summary"]
    per_run = max(
        (e["emitted"] // max(e["runs"], 1) for k, e in n.items() if "/dead/" in k),
        default=0,
    )
    bars = left.bar(labels, rss, color=colors)
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in rss], fontsize=8)
    left.set_ylabel("peak RSS, MiB")
    left.set_title(f"{per_run:,} records into a dead sink or a stalled peer", fontsize=9)
    bars = right.bar(labels, stop, color=colors)
    stop_labels = [
        f">= {v:.1f} s, blocked" if b else f"{v:.1f} s" for v, b in zip(stop, blocked, strict=True)
    ]
    right.bar_label(bars, labels=stop_labels, fontsize=8)
    right.set_ylabel("stop() duration, s (stdlib: given up on)")
    right.set_title(
        f"stop with a stalled sink (aiolog: timeout={worker.STOP_TIMEOUT_S:g})", fontsize=9
    )
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def render(results: dict[str, Any], plots: dict[str, str]) -> str:
    """The Markdown text of ``docs/benchmarks.md``."""
    config = results["config"]
    machine = results["machine"]
    preset = results.get("preset", "full")
    loops = list(results["loops"])
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks --write-docs`; edit benchmarks/_docs.py. -->",
        "",
        "What does logging cost an asyncio application? These figures compare aiolog with",
        "the standard library's own non-blocking setup (`QueueHandler` + `QueueListener`),",
        "with the peers (a `FileHandler` on the loop, structlog, loguru `enqueue=True`,",
        "aiologger) and with two references: a disabled logger and the cheapest possible",
        f"handler, on {' and '.join(loops)}. Run them on your machine with",
        "`python -m aiolog bench` (about 30 s, the stdlib and aiolog setups), or the full",
        "suite from a checkout with `python -m benchmarks` (`pip install -e .[bench]`).",
        "",
        "The machine is small (2 CPUs) and shared with other work while the suite runs: every",
        "figure is a median over interleaved runs in fresh processes, and differences under",
        "about 10% are within the noise.",
        "",
    ]
    if preset != "full":
        lines += [f"> These are `{preset}` figures (a smoke run), not the recorded suite.", ""]
    summaries = {loop: suite["summary"] for loop, suite in results["loops"].items()}
    rows = full.targets(summaries, results.get("scenarios", {}), results.get("pairs"))
    if rows:
        lines += [
            "## Targets",
            "",
            "Comparisons marked *back-to-back pairs* come from runs of the two sides one right",
            "after the other (order alternating), judged by the median of the per-pair ratios:",
            "a busy neighbour on this shared machine slows whole stretches of seconds, and",
            "runs of the main tables that are compared sit seconds apart.",
            "",
            _bench.table(full.TARGET_HEADER, rows, markdown=True),
            "",
            "*Drain throughput* (logging 100 000 records as fast as possible and draining",
            "them) is bound by the CPU both threads spend per record, since both run Python",
            "under one interpreter lock. In the tables below aiolog's loop thread spends about",
            "half of what the stdlib's does per record (its whole emit is cheaper than the",
            "stdlib's `prepare()`), but its listener thread costs about as much as the stdlib",
            "listener: the listener's copy of the record with its captured context, the",
            "message, the JSON dict that orjson encodes, and the batching, against `json` and",
            "one `write` per record; under load both also pay the garbage collector for the",
            "backlog. Doubling the stdlib's records/s would need the listener's share roughly",
            "halved, which pure Python on this machine does not reach. The listener alone",
            "(records queued first, then drained) measured 1.1-1.4x the stdlib listener.",
            "",
        ]
    for loop, suite in results["loops"].items():
        lines += [f"## Emit cost and loop lag: {loop} loop", ""]
        verdict = _bench.verdict(suite["summary"])
        if verdict:
            lines += [f"**{verdict}**", ""]
        lines += [_bench.format_tables(suite, markdown=True), ""]
        for name, note in suite.get("skipped", {}).items():
            lines += [f"- `{name}`: {note}"]
        if suite.get("skipped"):
            lines.append("")
    for key, alt in (("emit", "Median emit cost per setup"), ("lag", "Loop lag p99 per setup")):
        if key in plots:
            lines += [f"![{alt}]({plots[key]})", ""]
    scenarios = results.get("scenarios") or {}
    if scenarios:
        lines += [
            "## Scenarios: slow and dead sinks, a stalled TCP peer, drain throughput",
            "",
            "aiolog against the stdlib queue pair only. *slow*: the JSON lines file handler",
            f"sleeps {worker.SLOW_WRITE_S * 1e3:g} ms before each write; *dead*: its `emit` never",
            "returns. Both run behind the queue (for aiolog, the handler object is given to",
            "`aiolog.configure([...])`, which runs it on a worker thread); *fast* is each",
            "setup's usual JSON file. *stalled-peer*: JSON lines over TCP to a server on",
            "127.0.0.1 that accepts the connection and never reads from it (receive buffer",
            f"{worker.PEER_RCVBUF:,} bytes); aiolog uses its own `tcp://` sink with its default",
            "options, the stdlib a small handler that writes each line to a blocking socket",
            "(the stdlib has no JSON lines TCP handler), which blocks its listener thread once",
            "the kernel buffers are full. Before each run with the stalled peer, the child",
            f"logs records at {worker.FILL_RATE:,}/s until the sink is stuck, so the run",
            "measures a stalled peer rather than the first megabytes a socket takes; those",
            "records are not in *emitted*, but aiolog's *lost* counts them (nothing reaches",
            "the peer, so *delivered* does not apply).",
            "",
            "After the run the listener is stopped as an application",
            f"does at exit: `pipeline.stop({worker.STOP_TIMEOUT_S:g})` for aiolog, "
            "`QueueListener.stop()` for the",
            "stdlib, which has no timeout: it is called in a thread that is given up on after",
            f"{config.get('stop_cap', worker.STOP_CAP_S):g} s (*blocked*), the time an "
            "application's loop would be frozen",
            "at least. *lost* counts what aiolog reports dropped (its bounded queue and sink",
            "buffer overflow, and what the stop timeout abandons); *peak RSS* is",
            "`resource.getrusage(RUSAGE_SELF).ru_maxrss` of the child process.",
            "",
            "*Drain throughput* logs the records in a tight loop (yielding every 1 000) with",
            "queues large enough to hold them all, and times from the first call until",
            "`pipeline.flush()` / `QueueListener.stop()` returns; CPU is `time.process_time()`",
            "(all threads) per record, split into the loop thread and the others (listener,",
            "writers). With two CPUs shared by the caller and the listener, records/s is",
            "bounded by the cost of the calls themselves; *drain after last call* shows how",
            "far behind the listener was.",
            "",
        ]
        for loop, scen in scenarios.items():
            if not scen["setups"]:
                continue
            lines += [f"### {loop} loop", "", full.format_scenarios(scen, markdown=True), ""]
        if "scenarios" in plots:
            lines += [f"![Stalled sinks: memory and stop time]({plots['scenarios']})", ""]
    lines += ["## Setups", "", "| setup | what it is | why it is here |", "|---|---|---|"]
    setups: dict[str, str] = {}
    for suite in results["loops"].values():
        setups.update(suite["setups"])
        for name in suite.get("skipped", {}):
            setups.setdefault(name, worker.SETUPS.get(name, ""))
    for name, description in setups.items():
        lines.append(f"| `{name}` | {description} | {_SETUP_NOTES.get(name, '')} |")
    first = results["loops"][loops[0]]
    lines += [
        "",
        _METHOD.format(
            reps=config["reps"],
            emit_rounds=config.get("emit_rounds", 1),
            reference=_bench.REFERENCE,
            loop=" / ".join(loops),
            emit_n=config["emit_n"],
            warmup=config["warmup"],
            burst=config["burst"],
            pause_ms=config["pause"] * 1e3,
            rate=config["rate"],
            seconds=config["seconds"],
            settle_ms=min(0.1, config["seconds"] / 10) * 1e3,
        ),
        "## Machine",
        "",
        f"- CPU: {machine['cpu']} ({machine['cpus']} logical CPUs)",
        f"- OS: {machine['platform']}",
        f"- Python: {machine['implementation']} {machine['python']} ({machine['python_build']})",
        f"- Loops: {', '.join(loops)}",
        f"- aiolog: {machine['aiolog']}"
        + (f" (git {machine['git_commit']})" if machine.get("git_commit") else ""),
        f"- Suite run time: {results.get('elapsed_s', '?')} s; load average (1, 5, 15 min) "
        f"before: {_load(first, 'before')}, after: "
        f"{_load(results['loops'][loops[-1]], 'after')}",
        "",
        "Raw per-run figures: `benchmarks/results/latest.json`.",
        "",
    ]
    return "\n".join(lines)


def write_docs(results: dict[str, Any], docs: Path) -> list[Path]:
    """Write the Markdown page (and the plots when matplotlib is installed); return paths."""
    docs.mkdir(parents=True, exist_ok=True)
    written = []
    plots: dict[str, str] = {}
    if _grouped_bars(
        results,
        docs / PLOT_NAME,
        "emit",
        "emit_median_ns",
        "ns per logging call on the loop thread (median, log scale)",
        "Emit cost per setup",
        "{:,.0f} ns",
    ):
        plots["emit"] = PLOT_NAME
    if _grouped_bars(
        results,
        docs / LAG_PLOT_NAME,
        "lag",
        "lag_p99_ms",
        "loop lag p99, ms, while logging 20k records/s (log scale)",
        "Loop lag per setup",
        "{:.2f} ms",
    ):
        plots["lag"] = LAG_PLOT_NAME
    if _scenario_plot(results, docs / SCENARIO_PLOT_NAME):
        plots["scenarios"] = SCENARIO_PLOT_NAME
    written += [docs / name for name in plots.values()]
    page = docs / "benchmarks.md"
    text = render(results, plots)
    for name in KEPT_SECTIONS:
        kept = _kept_section(page, name)
        if kept:
            text = f"{text.rstrip()}\n\n{kept}\n"
    page.write_text(text, encoding="utf-8")
    written.insert(0, page)
    return written


#: Sections of the page this suite does not write, kept as they are between
#: ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``: "Burst to disk" (written by
#: ``python -m benchmarks.burst --write-docs``) and the sinks' throughput (by hand, from the
#: scripts it names).
KEPT_SECTIONS = ("burst", "sinks")


def _kept_section(page: Path, name: str) -> str:
    """The page's section ``name`` (see :data:`KEPT_SECTIONS`), or "" when there is none."""
    try:
        old = page.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    begin, end_mark = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    start, end = old.find(begin), old.find(end_mark)
    if start < 0 or end < start:
        return ""
    return old[start : end + len(end_mark)]
