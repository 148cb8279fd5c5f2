"""``python -m benchmarks.burst``: a burst of N records to a JSON lines file, until on disk.

One asyncio task logs N records in a tight loop (``log.info("request %d handled in %s
ms", i, "12.5")``, no ``await`` between the calls) into a JSON lines file; then the program
ends as programs do: it stops its logging (``pipeline.stop()``, ``QueueListener.stop()``,
...), which closes the file, and exits. Every setup runs with its default settings, each
run in a fresh child process (``python -m benchmarks.burst --child SETUP N PATH``), the
setups interleaved over the repetitions (their order rotates). Per run:

*delivered*
    The lines in the file once the child has exited, and whether they are the N records,
    each once, in order (*delivered at stop*: the lines when the stop call had returned).
*CPU per record*
    ``time.process_time()`` (user + sys of the whole process, every thread) from just
    before the first call until the data is on disk, divided by N; the loop thread's own
    share is ``time.thread_time()`` around the logging loop.
*to disk*
    Wall time from the first call until the stop call returned: the records are then
    written to the file and the file is closed, in the kernel's page cache, which is what
    any reader of the file sees. No setup calls ``fsync`` by default, and neither does
    the run. *process* is the whole child, spawn to exit, as the parent sees it (with its
    CPU from ``os.wait4``): interpreter start, imports, configuration and the exit path.
*peak RSS*
    The child's high-water mark of resident memory once the data is on disk (``VmHWM``;
    ``ru_maxrss`` where there is no ``/proc``: on Linux it keeps the parent's resident size
    across ``fork`` and ``execve``), and the resident size just before the first call (the
    imports differ: the growth is what the burst cost).

The summary holds medians per setup and N, the totals of the counts (a loss in one
repetition is never hidden by a median), and the paired ratio of aiolog's CPU per record
to each stdlib setup's: one ratio per repetition, the median of the ratios.

    python -m benchmarks.burst                    # N = 100 000 and 1 000 000, 3 reps
    python -m benchmarks.burst --quick            # N = 20 000, 1 rep: a smoke run
    python -m benchmarks.burst --reps 5 --n 100000 --json /tmp/burst.json
    python -m benchmarks.burst --from-json benchmarks/results/burst.json --write-docs

The full run writes ``benchmarks/results/burst.json``; ``--write-docs`` puts the "Burst to
disk" section into ``docs/benchmarks.md`` (between two markers, see :func:`write_docs`)
and the plot ``docs/benchmarks-burst.png``.

The child imports only what its setup needs, so that this module's top level imports the
standard library alone: a stdlib child that imported :mod:`aiolog` (for its benchmark's
formatter, say) would carry 20 MiB more resident memory and 0.2 s more start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import logging.handlers
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "burst.json"
DOCS = ROOT / "docs"
PLOT_NAME = "benchmarks-burst.png"

#: Setup name -> one-line description, in report order.
SETUPS: dict[str, str] = {
    "aiolog": 'aiolog.configure([f"file:{path}"]), then pipeline.stop()',
    "stdlib-queue": "logging.handlers.QueueHandler + QueueListener -> FileHandler, JSON "
    "formatter; listener.stop()",
    "stdlib-file": "logging.FileHandler on the loop thread, the same JSON formatter",
    "structlog-bytes": "structlog's fastest production setup: BytesLogger to the file, "
    "orjson JSONRenderer, filtering bound logger, cached",
    "loguru-enqueue": "loguru logger.add(path, enqueue=True, serialize=True) (default "
    "stderr sink removed); complete(), remove()",
    "picologging-queue": "picologging QueueHandler + QueueListener -> FileHandler, the same "
    "JSON fields",
}

#: The setups that need nothing outside the standard library and aiolog.
BUILTIN = ("aiolog", "stdlib-queue", "stdlib-file")

#: Optional peers: setup -> the modules it needs. A missing one is skipped with a note.
PEERS: dict[str, tuple[str, ...]] = {
    "structlog-bytes": ("structlog", "orjson"),
    "loguru-enqueue": ("loguru",),
    "picologging-queue": ("picologging",),
}

#: The stdlib setups aiolog's CPU per record is compared with, run by run.
REFERENCES = ("stdlib-queue", "stdlib-file")

LOGGER_NAME = "bench.burst"
MESSAGE = "request %d handled in %s ms"
ARG = "12.5"
#: The message as each record's JSON line holds it (quoted: loguru's ``text`` field holds
#: it too, but not between quotes).
_LINE = re.compile(rb'"request (\d+) handled in 12\.5 ms"')

DEFAULT_NS = (100_000, 1_000_000)
DEFAULT_REPS = 3
QUICK_N = 20_000
CHILD_TIMEOUT_S = 900.0

DOCS_BEGIN = "<!-- burst:begin -->"
DOCS_END = "<!-- burst:end -->"


# ---------------------------------------------------------------------------- setups


class StdlibJSONFormatter(logging.Formatter):
    """``aiolog._bench_worker.StdlibJSONFormatter``'s line: the fields aiolog's sink writes.

    A copy, not an import, so that the stdlib children do not import :mod:`aiolog`;
    ``tests/test_burst_bench.py`` checks that the two write the same line.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one JSON object: time, level, logger, message, task, thread."""
        doc: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "task": getattr(record, "taskName", None),
            "thread": record.threadName,
        }
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(doc)


@dataclass
class _Installed:
    """A setup ready to log: the call and its format, how to stop, what to report."""

    call: Callable[..., object]
    fmt: str
    #: Stop the logging as a program does at its end; the data is on disk when it returns.
    stop: Callable[[], None]
    #: Figures read after the timed part (the counters of aiolog's pipeline).
    report: Callable[[], dict[str, Any]] = dict


def _stdlib_root() -> logging.Logger:
    root = logging.getLogger()
    root.setLevel(logging.INFO)  # the stdlib root's default, WARNING, would drop the burst
    return root


def _install_aiolog(path: str) -> _Installed:
    import aiolog

    pipeline = aiolog.configure([f"file:{path}"])
    stop_ok: list[bool] = []

    def stop() -> None:
        stop_ok.append(pipeline.stop())

    def report() -> dict[str, Any]:
        stats = pipeline.stats()
        sinks = stats["sinks"].values()
        return {
            "stop_ok": stop_ok[0] if stop_ok else None,
            "lost": (stats["queue"]["dropped"] or 0) + sum(s["dropped"] for s in sinks),
            "queue_dropped": stats["queue"]["dropped"],
            "queue_high_water": stats["queue"]["high_water"],
            "sink_dropped": sum(s["dropped"] for s in sinks),
        }

    return _Installed(logging.getLogger(LOGGER_NAME).info, MESSAGE, stop, report)


def _install_stdlib_queue(path: str) -> _Installed:
    root = _stdlib_root()
    records: queue.Queue[logging.LogRecord] = queue.Queue(-1)
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(StdlibJSONFormatter())
    listener = logging.handlers.QueueListener(records, target)
    listener.start()
    handler = logging.handlers.QueueHandler(records)
    root.addHandler(handler)

    def stop() -> None:
        root.removeHandler(handler)
        listener.stop()
        target.close()

    return _Installed(logging.getLogger(LOGGER_NAME).info, MESSAGE, stop)


def _install_stdlib_file(path: str) -> _Installed:
    root = _stdlib_root()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(StdlibJSONFormatter())
    root.addHandler(handler)

    def stop() -> None:
        root.removeHandler(handler)
        handler.close()

    return _Installed(logging.getLogger(LOGGER_NAME).info, MESSAGE, stop)


def _install_structlog(path: str) -> _Installed:
    import orjson
    import structlog

    out = open(path, "wb")  # noqa: SIM115 - closed by stop()
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(file=out),
    )
    return _Installed(structlog.get_logger(LOGGER_NAME).info, MESSAGE, out.close)


def _install_loguru(path: str) -> _Installed:
    from loguru import logger

    logger.remove()  # the default sink writes every record to stderr as well
    logger.add(path, enqueue=True, serialize=True)

    def stop() -> None:
        logger.complete()
        logger.remove()

    return _Installed(logger.info, "request {} handled in {} ms", stop)


def _install_picologging(path: str) -> _Installed:
    import picologging
    import picologging.handlers

    class PicoJSONFormatter(picologging.Formatter):
        """:class:`StdlibJSONFormatter`'s fields, from a picologging record."""

        def format(self, record: picologging.LogRecord) -> str:
            # No formatTime() on picologging's Formatter, and its msecs is not the stdlib's.
            created = record.created
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            return json.dumps(
                {
                    "time": f"{stamp},{int(created % 1 * 1000):03d}",
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                    "task": getattr(record, "taskName", None),
                    "thread": record.threadName,
                }
            )

    root = picologging.getLogger()
    root.setLevel(picologging.INFO)
    records: queue.Queue[Any] = queue.Queue(-1)
    target = picologging.FileHandler(path, encoding="utf-8")
    target.setFormatter(PicoJSONFormatter())
    listener = picologging.handlers.QueueListener(records, target)
    listener.start()
    root.addHandler(picologging.handlers.QueueHandler(records))

    def stop() -> None:
        listener.stop()
        target.close()

    return _Installed(picologging.getLogger(LOGGER_NAME).info, MESSAGE, stop)


_INSTALL: dict[str, Callable[[str], _Installed]] = {
    "aiolog": _install_aiolog,
    "stdlib-queue": _install_stdlib_queue,
    "stdlib-file": _install_stdlib_file,
    "structlog-bytes": _install_structlog,
    "loguru-enqueue": _install_loguru,
    "picologging-queue": _install_picologging,
}


def _rss_mb() -> float | None:
    """The resident size of this process now, in MiB (Linux ``/proc``), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _peak_rss_mb() -> float | None:
    """Peak resident size of this process image in MiB, None where unknown.

    On Linux the high-water mark of ``/proc/self/status`` (``VmHWM``): ``ru_maxrss`` is
    carried over through ``fork`` and ``execve``, so a child's would never be below the
    resident size of the parent that spawned it. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def check_file(path: str | os.PathLike[str], n: int) -> dict[str, Any]:
    """Count the burst's records in ``path`` and check their order.

    Return ``lines`` (all of them), ``delivered`` (the lines holding a record of the
    burst; the others are what the setup wrote besides, such as aiolog's loss notices),
    ``ascending`` (each record's number is above the one before: a dropped record leaves
    a gap, nothing is repeated or moved) and ``in_order`` (the records are 0 to ``n - 1``,
    each once, in order).
    """
    lines = delivered = 0
    last = -1
    ascending = True
    try:
        with open(path, "rb") as f:
            for line in f:
                lines += 1
                match = _LINE.search(line)
                if match is None:
                    continue
                delivered += 1
                number = int(match[1])
                ascending = ascending and number > last
                last = number
    except FileNotFoundError:
        pass
    in_order = ascending and delivered == n and (n == 0 or last == n - 1)
    return {"lines": lines, "delivered": delivered, "ascending": ascending, "in_order": in_order}


# ---------------------------------------------------------------------------- the child


def run_burst(setup: str, n: int, path: str) -> dict[str, Any]:
    """Install ``setup``, log ``n`` records from one task, stop; return the figures.

    The configuration is done before the loop starts, as a program does at start-up; the
    stop call comes after ``asyncio.run()`` has returned, as at the end of ``main``.
    """
    installed = _INSTALL[setup](path)
    call, fmt = installed.call, installed.fmt
    marks: dict[str, float] = {}

    async def burst() -> None:
        marks["rss_start_mb"] = _rss_mb() or float("nan")
        marks["t0"], marks["c0"] = time.perf_counter(), time.process_time()
        l0 = time.thread_time()
        for i in range(n):
            call(fmt, i, ARG)
        marks["loop_cpu"] = time.thread_time() - l0
        marks["t_emit"] = time.perf_counter()

    asyncio.run(burst())
    t_stop = time.perf_counter()
    installed.stop()
    t_disk, c_disk = time.perf_counter(), time.process_time()
    peak = _peak_rss_mb()
    cpu = c_disk - marks["c0"]
    result: dict[str, Any] = {
        "setup": setup,
        "n": n,
        "emit_s": marks["t_emit"] - marks["t0"],
        "stop_s": t_disk - t_stop,
        "to_disk_s": t_disk - marks["t0"],
        "cpu_s": cpu,
        "cpu_us_per_record": cpu * 1e6 / n if n else None,
        "loop_cpu_us_per_record": marks["loop_cpu"] * 1e6 / n if n else None,
        "other_cpu_us_per_record": (cpu - marks["loop_cpu"]) * 1e6 / n if n else None,
        "rss_start_mb": marks["rss_start_mb"],
        "peak_rss_mb": peak,
        "delivered_at_stop": check_file(path, n)["delivered"],
        "python": sys.version.split()[0],
    }
    result.update(installed.report())
    return result


# ---------------------------------------------------------------------------- the driver


def _child_env() -> dict[str, str]:
    """This environment without ``AIOLOG_*`` (aiolog reads its defaults from them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIOLOG_")}


def run_child(
    setup: str, n: int, directory: str | os.PathLike[str], timeout: float = CHILD_TIMEOUT_S
) -> dict[str, Any]:
    """Run one burst in a fresh process; return its figures with the parent's view added.

    The parent adds the whole process's wall time and CPU (``os.wait4``), and counts the
    file once the child has exited (see :func:`check_file`); the file is then removed.
    Raise ``RuntimeError`` if the child fails or outlives ``timeout``.
    """
    path = Path(directory) / f"burst-{setup}-{n}.jsonl"
    argv = [sys.executable, "-m", "benchmarks.burst", "--child", setup, str(n), str(path)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env=_child_env())
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            usage: Any = None
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            else:  # pragma: no cover - not on Linux or macOS
                proc.wait()
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").strip().splitlines()
        stderr = err.read().decode(errors="replace").strip()
    if proc.returncode != 0 or not lines:
        path.unlink(missing_ok=True)
        raise RuntimeError(
            f"burst child failed (exit {proc.returncode}): {setup} {n:,}\n{stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    counts = check_file(path, n)
    path.unlink(missing_ok=True)
    delivered = counts["delivered"]
    result.update(
        delivered=delivered,
        other_lines=counts["lines"] - delivered,
        ascending=counts["ascending"],
        in_order=counts["in_order"],
        process_wall_s=wall,
    )
    # Dropped records cost less than written ones: per record delivered, the setups that
    # lose some are compared on the work they did.
    result["cpu_us_per_delivered"] = result["cpu_s"] * 1e6 / delivered if delivered else None
    if usage is not None:  # its ru_maxrss is not used: see _peak_rss_mb()
        result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    if stderr:
        result["stderr"] = stderr[-2000:]
    return result


def skipped_setups(setups: Sequence[str]) -> dict[str, str]:
    """The setups whose peer package is not installed, and the peers not measured: name -> note."""
    notes = {}
    for name in setups:
        missing = [m for m in PEERS.get(name, ()) if not _importable(m)]
        if missing:
            notes[name] = f"skipped: {', '.join(missing)} not installed"
    notes["logxide"] = _logxide_note()
    return notes


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _logxide_note() -> str:
    """Why logxide is not measured, for the installed version (or its absence)."""
    try:
        from importlib.metadata import version

        installed = version("logxide")
    except Exception:
        installed = None
    if installed is None:
        return (
            "not measured: not installed (its releases since 0.1.4 need Python >= 3.12; "
            "`pip install logxide` finds 0.1.2 at most on 3.10/3.11)"
        )
    if installed.startswith("0.1."):
        return (
            f"not measured: logxide {installed} is installed, the last release for "
            "Python < 3.12, and it is not a comparable setup: every record also goes to "
            "stderr, `logxide.flush()` returns before its Python handlers have run (most "
            "of a burst is not in the file seconds later), and the handlers get dicts "
            "without the arguments. Releases 0.1.4 to 0.3.0 need Python >= 3.12."
        )
    return f"not measured: no setup written for logxide {installed} yet"


def _order(setups: Sequence[str], rep: int) -> list[str]:
    """Rotate the setup order each repetition, so no setup always runs first or last."""
    k = rep % len(setups)
    return [*setups[k:], *setups[:k]]


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _git() -> dict[str, Any]:
    """The commit and whether ``aiolog/`` has changes not committed (read-only git calls)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "aiolog").splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None}
    return {
        "git_commit": commit,
        "git_dirty": bool(changed),
        "git_note": f"{commit} with uncommitted changes to aiolog/ ({len(changed)} files)"
        if changed
        else commit,
    }


def _aiolog_digest() -> str | None:
    """A digest of the ``aiolog/`` sources (None without them): it tells the runs apart
    when the package is edited while the benchmark runs.
    """
    import hashlib

    package = ROOT / "aiolog"
    if not package.is_dir():
        return None
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _machine() -> dict[str, Any]:
    """The machine, the Python and aiolog's version and git state (when the run starts)."""
    from aiolog import _bench

    return {**_bench.machine_info("asyncio"), **_git()}


def _git_text(machine: dict[str, Any]) -> str:
    text = str(machine.get("git_note") or machine.get("git_commit") or "unknown")
    if machine.get("git_note_at_end"):
        text += f" at the start, {machine['git_note_at_end']} at the end"
    return text


def _versions(setups: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {"aiolog-queue", "orjson"}
    for setup in setups:
        names.update(PEERS.get(setup, ()))
    found = {}
    for name in sorted(names):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


@dataclass
class Config:
    """What to run: the record counts, the repetitions and the setups."""

    ns: list[int] = field(default_factory=lambda: list(DEFAULT_NS))
    reps: int = DEFAULT_REPS
    setups: list[str] = field(default_factory=lambda: list(SETUPS))
    timeout: float = CHILD_TIMEOUT_S


def run(config: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every (setup, N) ``config.reps`` times, each in a fresh process, interleaved.

    Returns ``{"config", "machine", "versions", "skipped", "failed", "failed_runs",
    "aiolog_sources", "runs", "summary", "ratios", "elapsed_s", "loadavg"}``. A child that
    fails is recorded in ``failed_runs`` (its error's first lines) and the run goes on;
    ``failed`` names the setups that failed every time. ``aiolog_sources`` lists the
    digests of ``aiolog/`` seen before each aiolog run: more than one means the package
    changed while the benchmark ran.
    """
    skipped = skipped_setups(config.setups)
    setups = [s for s in config.setups if s not in skipped]
    machine = _machine()
    runs: list[dict[str, Any]] = []
    failed_runs: list[dict[str, Any]] = []
    sources: list[str] = []
    load_before = _loadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aiolog-burst-") as directory:
        for rep in range(config.reps):
            for n in config.ns:
                for setup in _order(setups, rep):
                    if progress is not None:
                        progress(f"rep {rep + 1}/{config.reps}  N={n:<9,} {setup}")
                    digest = _aiolog_digest() if setup == "aiolog" else None
                    if digest is not None and digest not in sources:
                        sources.append(digest)
                    try:
                        result = run_child(setup, n, directory, config.timeout)
                    except RuntimeError as exc:
                        error = "\n".join(str(exc).splitlines()[:3] + str(exc).splitlines()[-3:])
                        failed_runs.append({"setup": setup, "n": n, "rep": rep, "error": error})
                        continue
                    result["rep"] = rep
                    if digest is not None:
                        result["aiolog_source"] = digest
                    runs.append(result)
    ran = {r["setup"] for r in runs}
    failed = {
        f["setup"]: f"failed in every run: {f['error'].splitlines()[0]}"
        for f in failed_runs
        if f["setup"] not in ran
    }
    measured = [s for s in setups if s in ran]
    at_end = _git().get("git_note")
    if at_end != machine.get("git_note"):
        machine["git_note_at_end"] = at_end
    return {
        "config": {"ns": config.ns, "reps": config.reps, "setups": measured},
        "machine": machine,
        "versions": _versions(measured),
        "skipped": skipped,
        "failed": failed,
        "failed_runs": failed_runs,
        "aiolog_sources": sources,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "loadavg": {"before": load_before, "after": _loadavg()},
        "summary": summarise(runs),
        "ratios": paired_ratios(runs),
        "runs": runs,
    }


# ---------------------------------------------------------------------------- summary

#: Figures summarised by their median over the repetitions.
_MEDIANS = (
    "cpu_us_per_record",
    "cpu_us_per_delivered",
    "loop_cpu_us_per_record",
    "other_cpu_us_per_record",
    "emit_s",
    "stop_s",
    "to_disk_s",
    "process_wall_s",
    "process_cpu_s",
    "rss_start_mb",
    "peak_rss_mb",
)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and v == v]  # not None, not NaN
    return statistics.median(present) if present else None


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per setup and N (as a string key): medians of the figures, totals of the counts."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        summary.setdefault(r["setup"], {}).setdefault(str(r["n"]), {})
    for setup, per_n in summary.items():
        for key in per_n:
            mine = [r for r in runs if r["setup"] == setup and str(r["n"]) == key]
            entry: dict[str, Any] = {"reps": len(mine)}
            entry.update({k: _median([r.get(k) for r in mine]) for k in _MEDIANS})
            entry["emitted"] = sum(r["n"] for r in mine)
            entry["delivered"] = sum(r["delivered"] for r in mine)
            entry["delivered_at_stop"] = sum(r["delivered_at_stop"] for r in mine)
            entry["other_lines"] = sum(r.get("other_lines", 0) for r in mine)
            entry["in_order_runs"] = sum(bool(r["in_order"]) for r in mine)
            entry["ascending_runs"] = sum(bool(r.get("ascending", r["in_order"])) for r in mine)
            if any("lost" in r for r in mine):
                entry["lost"] = sum(r.get("lost") or 0 for r in mine)
            if any("stop_ok" in r for r in mine):
                entry["stop_ok_runs"] = sum(bool(r.get("stop_ok")) for r in mine)
            high_water = [r["queue_high_water"] for r in mine if r.get("queue_high_water")]
            if high_water:
                entry["queue_high_water_max"] = max(high_water)
            per_n[key] = entry
    return summary


#: The figures :func:`paired_ratios` compares: per record logged, and per record delivered
#: (a setup that drops records spends less per record logged for the work it skipped).
RATIO_METRICS = ("cpu_us_per_record", "cpu_us_per_delivered")


def paired_ratios(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """aiolog's CPU per record over each reference's, per N: the median of per-rep ratios.

    Pairing within a repetition cancels the slow drifts of a shared machine. Keys are
    ``"aiolog/REFERENCE"``, then N as a string, then each of :data:`RATIO_METRICS`:
    ``{"median", "ratios"}``.
    """
    by_key = {(r["setup"], r["n"], r["rep"]): r for r in runs}
    out: dict[str, dict[str, Any]] = {}
    for reference in REFERENCES:
        per_n: dict[str, Any] = {}
        for (setup, n, rep), ours in sorted(by_key.items(), key=lambda kv: kv[0][1:]):
            theirs = by_key.get((reference, n, rep))
            if setup != "aiolog" or theirs is None:
                continue
            for metric in RATIO_METRICS:
                if ours.get(metric) and theirs.get(metric):
                    entry = per_n.setdefault(str(n), {}).setdefault(metric, {"ratios": []})
                    entry["ratios"].append(ours[metric] / theirs[metric])
        for metrics in per_n.values():
            for entry in metrics.values():
                entry["median"] = statistics.median(entry["ratios"])
        if per_n:
            out[f"aiolog/{reference}"] = per_n
    return out


# ---------------------------------------------------------------------------- reporting


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    out = []
    for row in [list(header), *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


HEADER = (
    "setup",
    "N",
    "delivered",
    "in order",
    "CPU µs/rec",
    "per delivered",
    "loop thread",
    "other threads",
    "to disk s",
    "stop s",
    "process s",
    "process CPU s",
    "peak RSS MiB",
    "RSS growth",
)


def _delivered(entry: dict[str, Any]) -> str:
    cell = f"{entry['delivered']:,}/{entry['emitted']:,}"
    extra = []
    if entry.get("lost"):
        extra.append(f"{entry['lost']:,} dropped")
    if entry.get("other_lines"):
        extra.append(f"+{entry['other_lines']:,} other lines")
    return cell + (f" ({', '.join(extra)})" if extra else "")


def _in_order(entry: dict[str, Any]) -> str:
    if entry["in_order_runs"] == entry["reps"]:
        return "yes"
    if entry.get("ascending_runs", 0) == entry["reps"]:
        return "gaps, no reordering"
    return f"{entry['in_order_runs']}/{entry['reps']} runs"


def result_rows(summary: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    """The rows of the results table, by N then setup (in :data:`SETUPS` order)."""
    keys = sorted({int(k) for per_n in summary.values() for k in per_n})
    order = [s for s in SETUPS if s in summary] + [s for s in summary if s not in SETUPS]
    rows = []
    for n in keys:
        for setup in order:
            e = summary[setup].get(str(n))
            if e is None:
                continue
            growth = None
            if e["peak_rss_mb"] is not None and e["rss_start_mb"] is not None:
                growth = max(0.0, e["peak_rss_mb"] - e["rss_start_mb"])
            rows.append(
                [
                    setup,
                    f"{n:,}",
                    _delivered(e),
                    _in_order(e),
                    _fmt(e["cpu_us_per_record"], 2),
                    _fmt(e.get("cpu_us_per_delivered"), 2),
                    _fmt(e["loop_cpu_us_per_record"], 2),
                    _fmt(e["other_cpu_us_per_record"], 2),
                    _fmt(e["to_disk_s"], 2),
                    _fmt(e["stop_s"], 2),
                    _fmt(e["process_wall_s"], 2),
                    _fmt(e["process_cpu_s"], 2),
                    _fmt(e["peak_rss_mb"], 0),
                    _fmt(growth, 0),
                ]
            )
    return rows


def ratio_rows(ratios: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows of the paired-ratio table: comparison, N, then per metric the median ratio and
    the ratios of the repetitions.
    """
    rows = []
    for name, per_n in ratios.items():
        for n, metrics in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            row = [name, f"{int(n):,}"]
            for metric in RATIO_METRICS:
                entry = metrics.get(metric)
                if entry is None:
                    row += ["-", "-"]
                    continue
                row += [f"{entry['median']:.2f}x", ", ".join(f"{r:.2f}" for r in entry["ratios"])]
            rows.append(row)
    return rows


RATIO_HEADER = (
    "aiolog ÷",
    "N",
    "CPU/record",
    "per repetition",
    "CPU/delivered record",
    "per repetition",
)


def format_report(results: dict[str, Any], markdown: bool = False) -> str:
    """The results table, the paired ratios and the notes, as text or Markdown."""
    parts = [_table(HEADER, result_rows(results["summary"]), markdown)]
    rows = ratio_rows(results.get("ratios", {}))
    if rows:
        parts += ["", _table(RATIO_HEADER, rows, markdown)]
    notes = {**results.get("skipped", {}), **results.get("failed", {})}
    for f in results.get("failed_runs", []):
        if f["setup"] not in results.get("failed", {}):
            first = f["error"].splitlines()[0]
            notes[f"{f['setup']} N={f['n']:,} rep {f['rep'] + 1}"] = f"run failed: {first}"
    if len(results.get("aiolog_sources", [])) > 1:
        reps: dict[str, list[int]] = {}
        for r in results.get("runs", []):
            if r.get("aiolog_source") and r["rep"] + 1 not in reps.get(r["aiolog_source"], []):
                reps.setdefault(r["aiolog_source"], []).append(r["rep"] + 1)
        versions = "; ".join(
            f"`{digest}` in repetition(s) {', '.join(map(str, sorted(seen)))}"
            for digest, seen in reps.items()
        )
        notes["aiolog sources"] = (
            f"changed while the benchmark ran ({len(results['aiolog_sources'])} versions, by "
            f"digest of aiolog/*.py: {versions}; each aiolog run records its `aiolog_source`)"
        )
    if notes:
        parts.append("")
        parts += [f"- `{k}`: {v}" if markdown else f"{k}: {v}" for k, v in notes.items()]
    return "\n".join(parts)


def plot(results: dict[str, Any], path: Path) -> bool:
    """Bars of CPU per record by setup, one panel per N, split into the loop thread and the
    other threads, with a tick at the CPU per record delivered where records were lost;
    return False when matplotlib is not installed.

    A setup far above the others (more than 3x their median) would flatten the rest: its
    bar is cut at the edge of the axis and labelled with its value.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return False
    summary = results["summary"]
    ns = sorted({int(k) for per_n in summary.values() for k in per_n})
    setups = [s for s in SETUPS if s in summary]
    fig, axes = plt.subplots(
        1, len(ns), figsize=(5.4 * len(ns), 0.5 * len(setups) + 1.7), dpi=110, squeeze=False
    )
    for ax, n in zip(axes[0], ns, strict=True):
        entries = [summary[s].get(str(n), {}) for s in setups]
        loop = [e.get("loop_cpu_us_per_record") or 0.0 for e in entries]
        other = [max(0.0, e.get("other_cpu_us_per_record") or 0.0) for e in entries]
        total = [e.get("cpu_us_per_record") or 0.0 for e in entries]
        present = [t for t in total if t > 0] or [1.0]
        typical = statistics.median(present)
        limit = max(t for t in present if t <= 3 * typical) * 1.6
        colors = ["#d62728" if s == "aiolog" else "#7f7f7f" for s in setups]
        ys = list(range(len(setups)))
        ax.barh(ys, [min(v, limit) for v in loop], color=colors)
        ax.barh(
            ys,
            [max(0.0, min(o, limit - lp)) for lp, o in zip(loop, other, strict=True)],
            left=[min(v, limit) for v in loop],
            color=colors,
            alpha=0.4,
        )
        for y, value, e in zip(ys, total, entries, strict=True):
            if not e:
                ax.text(0, y, " not run", va="center", fontsize=7)
                continue
            lost = e.get("emitted", 0) - e.get("delivered", 0)
            label = f"{value:.1f} µs"
            end = value
            per_delivered = e.get("cpu_us_per_delivered")
            if lost and per_delivered:
                ax.plot([min(per_delivered, limit)], [y], marker="|", color="k", markersize=14)
                label += f", {lost:,} lost\n  |: {per_delivered:.1f} µs per record delivered"
                end = max(value, min(per_delivered, limit))
            if end > limit:
                ax.text(limit, y, f"{label} >", va="center", ha="right", fontsize=7, color="w")
            else:
                ax.text(end, y, "  " + label, va="center", fontsize=7)
        ax.set_yticks(ys, setups)
        ax.invert_yaxis()
        ax.set_xlim(0, limit)
        ax.set_xlabel("CPU µs per record until on disk, median")
        ax.set_title(f"N = {n:,}", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][-1].legend(
        handles=[
            Patch(color="#7f7f7f", label="loop thread"),
            Patch(color="#7f7f7f", alpha=0.4, label="other threads"),
        ],
        fontsize=7,
        loc="lower right",
    )
    machine = results["machine"]
    fig.suptitle(
        f"Burst to disk: whole-process CPU per record - Python {machine['python']}, "
        f"{machine['cpus']} CPUs (aiolog in red)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------- docs


def _ratio_sentence(results: dict[str, Any]) -> str:
    parts = []
    for name, per_n in results.get("ratios", {}).items():
        reference = name.split("/", 1)[1]
        values = []
        for n, metrics in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            logged = metrics.get("cpu_us_per_record")
            delivered = metrics.get("cpu_us_per_delivered")
            if logged is None:
                continue
            value = f"{logged['median']:.2f}x at N = {int(n):,}"
            if delivered is not None and abs(delivered["median"] - logged["median"]) > 0.005:
                value += f" ({delivered['median']:.2f}x per record delivered)"
            values.append(value)
        if values:
            parts.append(f"`{reference}`'s: " + ", ".join(values))
    if not parts:
        return ""
    return (
        "aiolog's CPU per record, over "
        + "; over ".join(parts)
        + " (medians of the ratios of runs in the same repetition)."
    )


def _loss_sentences(results: dict[str, Any]) -> list[str]:
    lines = []
    for setup, per_n in results["summary"].items():
        for n, e in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            missing = e["emitted"] - e["delivered"]
            if missing or e["in_order_runs"] != e["reps"]:
                why = ""
                if e.get("lost"):
                    why = f"; aiolog's counters report {e['lost']:,} dropped"
                    if e.get("queue_high_water_max"):
                        why += f", its queue filled to {e['queue_high_water_max']:,} records"
                if "stop_ok_runs" in e and e["stop_ok_runs"] != e["reps"]:
                    why += (
                        f"; `pipeline.stop()` returned False in "
                        f"{e['reps'] - e['stop_ok_runs']} of {e['reps']} run(s)"
                    )
                order = "the ones written in ascending order, with gaps"
                if e.get("ascending_runs", 0) != e["reps"]:
                    order = f"in order in {e['in_order_runs']} of {e['reps']} run(s)"
                lines.append(
                    f"- `{setup}`, N = {int(n):,}: {e['delivered']:,} of {e['emitted']:,} "
                    f"records in the files over {e['reps']} run(s), {order}{why}."
                )
    return lines


#: What the setups write besides the shared fields, and what they pay for it.
_SETUP_NOTES = (
    "The lines differ where the setups do: aiolog adds `coro` and `process` to the fields",
    "above; on Python < 3.12 the stdlib records have no `taskName` (`task` is null);",
    "picologging records no thread name (`thread` is null); structlog's fast setup writes",
    "`event`, `level` and `timestamp` only; loguru's `serialize=True` writes the formatted",
    "text and the whole record (about 650 bytes a line, against 160 for the stdlib",
    "formatter's, 210 for aiolog's and 100 for structlog's), and its",
    "`enqueue=True` pickles each message through a `multiprocessing` pipe to its writer",
    "thread. Loguru's default stderr sink is removed (it would print every record too).",
)


def render_section(results: dict[str, Any], plot_name: str | None) -> str:
    """The "Burst to disk" section of ``docs/benchmarks.md``, between its markers."""
    machine = results["machine"]
    config = results["config"]
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    losses = _loss_sentences(results)
    lines = [
        DOCS_BEGIN,
        "<!-- Generated by `python -m benchmarks.burst --write-docs` (edit benchmarks/burst.py)."
        " `python -m benchmarks --write-docs` keeps this section as it is;"
        " `--from-json benchmarks/results/burst.json` re-renders the recorded run. -->",
        "",
        "## Burst to disk",
        "",
        "A program that logs N records as fast as it can and then ends: one asyncio task",
        '`log.info("request %d handled in %s ms", i, "12.5")` N times in a tight loop (no',
        "`await` between the calls) into a JSON lines file, then the program stops its logging",
        "(`pipeline.stop()`, `QueueListener.stop()`, ...) and exits. Every setup has its",
        "default settings; the stdlib setups write the same fields as aiolog's JSON line",
        "(time, level, logger, message, task, thread). Run it with `python -m benchmarks.burst`",
        "(`--quick`: 20 000 records, one repetition, a few seconds).",
        "",
        "**Method.** Each run is a fresh child process (`python -m benchmarks.burst --child",
        "SETUP N PATH`); the setups are interleaved and their order rotates from one",
        f"repetition to the next; {config['reps']} repetition(s) per setup and N, medians shown.",
        "*CPU µs/rec* is `time.process_time()` (user + sys, every thread of the process) from",
        "just before the first call until the stop call returned, divided by N; *loop thread*",
        "is `time.thread_time()` of the logging loop alone, *other threads* the rest (the",
        "listener or writer threads, and the stop). *to disk* is the wall time from the first",
        "call until the stop call returned: the records are then written and the file closed",
        "(in the page cache, as any reader sees it; no setup calls `fsync`, nor does the run);",
        "*stop* is the stop call's share. Wall times include the waits for a CPU on a busy",
        "machine (see the load averages below); CPU times do not. *process* and *process CPU*",
        "are the whole child as",
        "the parent sees it (`os.wait4`): interpreter start, imports, configuration, the burst",
        "and the exit. *delivered* counts the burst's records in the file after the child",
        "exited, totalled over the runs (*other lines*: what the setup wrote besides, such as",
        "aiolog's loss notices; *dropped*: what aiolog's counters say it dropped); *in order*",
        "says whether each run's file held the N records, each once, in order (*gaps, no",
        "reordering*: records are missing, the others are in order). *per delivered* is the",
        "CPU divided by the records delivered instead of N, which compares a setup that",
        "drops records on the work it did. *peak RSS* is the child's high-water mark of",
        "resident memory once the data is on disk: `VmHWM` from `/proc/self/status`, not",
        "`ru_maxrss`, which Linux carries over through `fork` and `execve` (every child would",
        "show at least the parent's resident size). *RSS growth* is that minus the resident",
        "size just before the first call (the setups import different amounts of code).",
        "",
        "| setup | what it is |",
        "|---|---|",
        *(f"| `{name}` | {SETUPS[name]} |" for name in config["setups"] if name in SETUPS),
        "",
        *_SETUP_NOTES,
        "",
        format_report(results, markdown=True),
        "",
    ]
    if plot_name:
        lines += [f"![CPU per record by setup, burst to disk]({plot_name})", ""]
    lines += [
        "**Reading the figures.** Under the interpreter lock only one thread runs Python at a",
        "time, so a listener thread's CPU is the application's CPU: the work a queue moves",
        "off the loop thread is still paid for by the same process, on the same lock, and on",
        "a machine whose other cores are busy, out of the same cores. A queue changes *when*",
        "the cost is paid (the loop thread returns sooner from each call), not how much: for",
        "a burst, the whole-process CPU per record is the honest figure, and the loop thread's",
        "share is what the event loop itself was held up by. `stdlib-file` pays everything on",
        "the loop thread, including a `write()` system call per record; the queue setups pay",
        "a hand-off per record besides the formatting and the writes.",
        "",
    ]
    sentence = _ratio_sentence(results)
    if sentence:
        lines += [sentence, ""]
    if losses:
        lines += ["Records missing from the files, or out of order:", "", *losses, ""]
    if any(e.get("lost") for e in results["summary"].get("aiolog", {}).values()):
        lines += [
            "aiolog's losses are its defaults at work: a bounded queue (`queue_size`, 200 000",
            'records) with `overflow="drop_newest"`. In a loop that never awaits, the listener',
            "thread runs only when the loop thread lets go of the interpreter lock (every",
            "`sys.getswitchinterval()`, 5 ms), and writing a record costs it more lock time",
            "than the call costs the loop thread, so a burst that outgrows the queue loses what",
            "does not fit (counted, and said in the file by its loss notices, the *other",
            "lines*). A dropped record is not free: the loop thread built and captured it",
            "before the queue turned it away, hence the higher CPU per record delivered. The",
            "stdlib queue setups never drop (their queue is unbounded) and pay in memory",
            "instead: their *peak RSS* holds the backlog.",
            "",
        ]
    else:
        lines += ["Every setup delivered every record, in order, in every run.", ""]
    lines += [
        f"Recorded on {machine['cpu']} ({machine['cpus']} CPUs), {machine['implementation']}"
        f" {machine['python']}, asyncio loop; {versions}; aiolog at git "
        f"{_git_text(machine)}. The run took "
        f"{results.get('elapsed_s', '?')} s; load average before "
        f"{_load(results, 'before')}, after {_load(results, 'after')}. Raw per-run figures:",
        "`benchmarks/results/burst.json`.",
        DOCS_END,
    ]
    return "\n".join(lines)


def _load(results: dict[str, Any], when: str) -> str:
    values = (results.get("loadavg") or {}).get(when)
    return "unknown" if not values else ", ".join(f"{v:g}" for v in values)


def write_docs(results: dict[str, Any], docs: Path = DOCS) -> list[Path]:
    """Put the section into ``docs/benchmarks.md`` and write the plot; return the paths.

    The section sits between :data:`DOCS_BEGIN` and :data:`DOCS_END`: an existing one is
    replaced in place, otherwise it is appended at the end of the page. The rest of the
    page is left as it is (``benchmarks/_docs.py`` generates it, and drops this section
    when it does: run this again after it).
    """
    docs.mkdir(parents=True, exist_ok=True)
    written = []
    plot_name = PLOT_NAME if plot(results, docs / PLOT_NAME) else None
    if plot_name:
        written.append(docs / plot_name)
    page = docs / "benchmarks.md"
    text = page.read_text(encoding="utf-8") if page.exists() else "# Benchmarks\n"
    section = render_section(results, plot_name)
    begin, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if begin != -1 and end > begin:
        text = text[:begin] + section + text[end + len(DOCS_END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    page.write_text(text, encoding="utf-8")
    written.insert(0, page)
    return written


# ---------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A one-line progress display on stderr (one line per step when not a terminal)."""
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


def _child_main(args: argparse.Namespace) -> int:
    setup, n, path = args.child
    if setup not in _INSTALL:
        print(f"unknown setup {setup!r} (known: {', '.join(SETUPS)})", file=sys.stderr)
        return 2
    print(json.dumps(run_burst(setup, int(n), path)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.burst``: run, print the table, record, write the docs."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.burst", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help=f"N={QUICK_N:,}, one repetition")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {DEFAULT_REPS})")
    parser.add_argument("--n", type=int, nargs="+", help="record counts (default 100000 1000000)")
    parser.add_argument("--setups", help="comma-separated subset of: " + ", ".join(SETUPS))
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="results file (default: results/burst.json)"
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="report saved results")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--child", nargs=3, metavar=("SETUP", "N", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args)

    output: Path | None = args.json
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        config = Config()
        if args.quick:
            config.ns, config.reps = [QUICK_N], 1
        if args.n:
            config.ns = args.n
        if args.reps is not None:
            config.reps = max(1, args.reps)
        if args.setups:
            chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
            unknown = [s for s in chosen if s not in SETUPS]
            if unknown:
                parser.error(f"unknown setup(s): {', '.join(unknown)}")
            config.setups = chosen
        with _status(not args.quiet) as show:
            results = run(config, show)
        results["preset"] = "quick" if args.quick else "full"
        if output is None and not args.quick:
            output = RESULTS
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print(format_report(results))
    print()
    machine = results["machine"]
    print(
        f"Machine: {machine['cpu']} ({machine['cpus']} CPUs), Python {machine['python']}; "
        f"aiolog at {_git_text(machine)}; "
        f"run took {results.get('elapsed_s', '?')} s"
    )
    if output is not None:
        print(f"Results: {output}")
    if args.write_docs:
        for path in write_docs(results):
            print(f"Wrote {path}")
    return 1 if any(f["setup"] in BUILTIN for f in results.get("failed_runs", [])) else 0


if __name__ == "__main__":
    sys.exit(main())
