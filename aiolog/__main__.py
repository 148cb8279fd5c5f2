"""``python -m aiolog``: ``demo`` (aiolog against a blocking handler), ``bench``, ``--version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m aiolog`` and its subcommands."""
    from aiolog import __version__, _bench, _demo

    parser = argparse.ArgumentParser(
        prog="python -m aiolog",
        description="aiolog: logging for asyncio applications that never blocks the loop.",
    )
    parser.add_argument("--version", action="version", version=f"aiolog-queue {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run an asyncio workload with aiolog, then with a slow blocking handler, "
        "and compare loop lag (~10 s)",
        description="Run the same asyncio workload logged two ways, aiolog and a blocking "
        "handler that takes 1 ms per record, and compare event-loop lag, records written and "
        "wall time. Warnings of both runs go to stderr, in the same format; everything else "
        "is written to a temporary directory that is removed afterwards.",
    )
    _demo.add_arguments(demo)
    demo.set_defaults(main=_demo.main)
    bench = commands.add_parser(
        "bench",
        help="measure emit cost and loop lag of aiolog and the stdlib on this machine (~30 s)",
        description="Measure what logging costs the event loop, per setup, each in a fresh "
        "process: the cost of one logger.info() call, and loop lag at 20,000 records/s.",
    )
    _bench.add_arguments(bench)
    bench.set_defaults(main=_bench.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; print help without one."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
