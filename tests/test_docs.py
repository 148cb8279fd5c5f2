"""Every code block in README.md and docs/*.md runs, and shows the output it really prints.

The convention, in HTML comments right before a block (invisible on GitHub and in mkdocs):

- A ``python`` block runs as a script of its own, in a fresh interpreter, in an empty
  temporary directory (the current one for its relative paths), and must exit 0.
  A block that starts with ``>>>`` is an expression: what follows it is the value's
  ``repr``, checked for the same shape (the same keys, in order, and the same types).
- ``<!-- docs-test: output -->`` marks a block as what the previous ``python`` block of the
  page prints (stdout and stderr, stderr not being a terminal): JSON lines are compared key
  for key (``timestamp``, ``process`` and a default task name ``Task-N`` by form only);
  other text line for line.
- ``<!-- docs-test: setup`` / code / ``-->`` runs that code first (imports or definitions a
  fragment assumes); ``<!-- docs-test: then`` / code / ``-->`` runs it after the block
  (a check of what the block did).
- ``<!-- docs-test: by tests/FILE.py -->``: another test runs this block (it starts a
  server, builds a venv); that file must exist and read this page.
- ``<!-- docs-test: skip REASON -->`` leaves a block out, with a reason (a diagram, an
  output no test reproduces). Any other block without a marker fails this test.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>[a-z]+)(?P<rest>.*?)-->", re.S)
#: JSON fields that differ from run to run: checked by form, not by value.
VOLATILE = {
    "timestamp": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"),
    "process": re.compile(r"\d+"),
}
#: asyncio's default task names: the counter is the process's, the listener's tasks included.
DEFAULT_TASK = re.compile(r"Task-\d+")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Block:
    """One fenced block of a page and the markers right before it."""

    page: Path
    line: int
    info: str
    body: str
    markers: dict[str, str] = field(default_factory=dict)
    output: Block | None = None  # the block that shows what this one prints

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def runs_here(block: Block) -> bool:
    """Whether this test runs the block: python, neither skipped nor run by another test."""
    return block.info == "python" and not {"skip", "by"} & set(block.markers)


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks, with their markers; output blocks tied to their code."""
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    end = 0
    for match in FENCE.finditer(text):
        before = text[end : match.start()]
        end = match.end()
        # Markers count when only blank lines (and other markers) separate them from it.
        markers = {}
        rest = before.rstrip()
        while rest.endswith("-->") and "<!--" in rest:
            start = rest.rfind("<!--")
            marker = MARKER.fullmatch(rest[start:])
            if marker is None:
                break
            markers[marker.group("kind")] = marker.group("rest").strip()
            rest = rest[:start].rstrip()
        line = text.count("\n", 0, match.start()) + 1
        block = Block(page, line, match.group("info").strip(), match.group("body"), markers)
        if "output" in markers:
            runnable = [b for b in found if runs_here(b)]
            assert runnable, f"{block.id}: an output block with no python block before it"
            runnable[-1].output = block
        found.append(block)
    return found


ALL = [block for page in PAGES for block in blocks(page)]
RUN = [b for b in ALL if runs_here(b)]


def test_every_block_is_run_shown_output_or_skipped_with_a_reason() -> None:
    """No block escapes: each is python, the output of one, or skipped with a reason."""
    unmarked = [
        b.id
        for b in ALL
        if not (b.info == "python" or b.markers.get("skip") or {"output", "by"} & set(b.markers))
    ]
    assert [] == unmarked
    unknown = [b.id for b in ALL if set(b.markers) - {"skip", "output", "setup", "then", "by"}]
    assert [] == unknown


@pytest.mark.parametrize("block", [b for b in ALL if "by" in b.markers], ids=lambda b: b.id)
def test_a_block_run_by_another_test_is_read_there(block: Block) -> None:
    """``by tests/FILE.py`` names a test file that exists and reads this page."""
    test_file = ROOT / block.markers["by"]
    assert test_file.is_file(), block.markers["by"]
    assert block.page.name in test_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_marker_belongs_to_a_block(page: Path) -> None:
    """A marker not right before a block (a typo, a marker after its block) fails."""
    written = len(MARKER.findall(page.read_text(encoding="utf-8")))
    assert written == sum(len(b.markers) for b in blocks(page))


def test_skips_are_rare() -> None:
    """Most blocks run: skips stay below a quarter of all blocks."""
    skipped = [b for b in ALL if "skip" in b.markers]
    assert len(skipped) * 4 < len(ALL), [b.id for b in skipped]


def run_block(block: Block, tmp_path: Path) -> tuple[str, Path]:
    """Run the block as a script in ``tmp_path``; return its output (stdout + stderr)."""
    setup = block.markers.get("setup", "")
    then = block.markers.get("then", "")
    body = block.body
    result = tmp_path / "result.repr"
    if body.startswith(">>> "):
        expression = body.splitlines()[0][4:]
        body = f"__value = {expression}\nopen({str(result)!r}, 'w').write(repr(__value))\n"
    script = tmp_path / "block.py"
    script.write_text(f"{setup}\n{body}\n{then}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOLOG_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="100")
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=45,  # below pytest's timeout: a hang names its block and shows its output
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        output = raw if isinstance(raw, str) else raw.decode(errors="replace")
        pytest.fail(f"{block.id} did not end within 45 s:\n{output}")
    assert 0 == proc.returncode, f"{block.id} failed:\n{proc.stdout}"
    return proc.stdout, result


def same_shape(shown: Any, actual: Any, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``shown`` in keys, their order, or types."""
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {type(actual).__name__}, shown a dict"]
        if list(shown) != list(actual):
            if len(shown) == 1 == len(actual):  # one entry named by the example (a sink)
                return same_shape(next(iter(shown.values())), next(iter(actual.values())), where)
            return [f"{where}: keys {list(actual)}, shown {list(shown)}"]
        return [p for k in shown for p in same_shape(shown[k], actual[k], f"{where}.{k}")]
    if shown is None or actual is None:
        return []  # "last_error": None, or a string once there is one
    if type(shown) is not type(actual):
        return [f"{where}: {type(actual).__name__}, shown {type(shown).__name__}"]
    return []


def compare_json_lines(shown: str, actual: str) -> None:
    got = [json.loads(line) for line in actual.splitlines() if line.strip()]
    want = [json.loads(line) for line in shown.splitlines() if line.strip()]
    assert len(want) == len(got), actual
    for expected, record in zip(want, got, strict=True):
        assert list(expected) == list(record), actual
        for key, value in expected.items():
            if key in VOLATILE:
                assert VOLATILE[key].fullmatch(str(record[key])), (key, record[key])
            elif key == "task" and DEFAULT_TASK.fullmatch(str(value)):
                assert DEFAULT_TASK.fullmatch(str(record[key])), (key, record[key])
            else:
                assert value == record[key], (key, actual)


def compare_text(shown: str, actual: str) -> None:
    def lines(text: str) -> list[str]:
        return [ANSI.sub("", line).rstrip() for line in text.strip("\n").splitlines()]

    assert lines(shown) == lines(actual)


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs_and_prints_what_it_shows(block: Block, tmp_path: Path) -> None:
    """The block exits 0; its shown value or output is what it gives."""
    output, result = run_block(block, tmp_path)
    if block.body.startswith(">>> "):
        shown = ast.literal_eval(block.body.split("\n", 1)[1])
        actual = ast.literal_eval(result.read_text(encoding="utf-8"))
        assert [] == same_shape(shown, actual)
    if block.output is not None:
        if block.output.info == "json":
            compare_json_lines(block.output.body, output)
        else:
            compare_text(block.output.body, output)


def test_the_marker_parser_sees_setup_output_and_skip(tmp_path: Path) -> None:
    """A small page: setup and then attach to their block, output to the code before it."""
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n<!-- docs-test: setup\nx = 1\n-->\n```python\nprint(x)\n```\n\n"
        "<!-- docs-test: output -->\n```text\n1\n```\n\n"
        "<!-- docs-test: skip needs a server -->\n```sh\ncurl localhost\n```\n\n"
        "<!-- docs-test: skip stale -->\n\nA paragraph in between.\n\n```sh\nls\n```\n",
        encoding="utf-8",
    )
    code, out, skipped, unmarked = blocks(page)
    assert "x = 1" == code.markers["setup"]
    assert code.output is out
    assert {"skip": "needs a server"} == skipped.markers
    assert {} == unmarked.markers  # a marker separated by a paragraph does not count
