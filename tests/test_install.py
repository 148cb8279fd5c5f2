"""The README's Install section works as written: this checkout, installed into a fresh venv.

The README's first install command (``pip install .``) runs as it is, with a new venv's pip,
in the checkout: pip builds the wheel (fetching the build backend from PyPI) and installs it
with its dependencies. The installed package, not this source tree, then runs the README's
quick start and ``python -m aiolog --version``. Built once per session, and on one Python:
in the main venv (``.venv``, which ``make test`` runs first), or wherever
``AIOLOG_TEST_INSTALL=1`` asks for it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.test_docs import compare_json_lines

ROOT = Path(__file__).resolve().parents[1]
ONE_PYTHON = (
    Path(sys.prefix).resolve() == ROOT / ".venv" or os.environ.get("AIOLOG_TEST_INSTALL") == "1"
)

pytestmark = [
    pytest.mark.install,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not ONE_PYTHON, reason="one Python is enough: run in .venv"),
]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's section under ``## title``, up to the next one."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match is not None, title
    return match.group(1)


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path, nor a venv of ours."""
    drop = ("PYTHON", "VIRTUAL_ENV", "AIOLOG_")  # nothing of this checkout's venv
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {"NO_COLOR": "1"}


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert 0 == proc.returncode, f"{argv}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the README's ``pip install .`` done in it; its python."""
    (command,) = re.findall(r"```console\n(pip install \.) ", section("Install"))
    directory = tmp_path_factory.mktemp("install") / "venv"
    venv.create(directory, with_pip=True)
    python = directory / "bin" / "python"
    argv = [str(python), "-m", *shlex.split(command)]  # "pip install ." with the venv's pip
    run([*argv, "--quiet", "--disable-pip-version-check"], cwd=ROOT, timeout=540)
    return python


def test_the_installed_package_is_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    """``import aiolog`` in the venv finds the installed copy, at the checkout's version."""
    code = "import aiolog, sys; print(aiolog.__file__); print(aiolog.__version__)"
    where, version = run([str(installed), "-c", code], tmp_path, 60).stdout.split()
    assert Path(where).is_relative_to(installed.parents[1])
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{version}"' in project
    proc = run([str(installed), "-m", "aiolog", "--version"], tmp_path, 60)
    assert f"aiolog-queue {version}\n" == proc.stdout


def test_the_readme_quick_start_prints_what_the_readme_shows(
    installed: Path, tmp_path: Path
) -> None:
    """The quick start, run by the installed package, prints the README's lines and files them."""
    quick = section("Quick start")
    code, shown = re.findall(r"```(?:python|json)\n(.*?)```", quick, re.S)[:2]
    (tmp_path / "quick_start.py").write_text(code, encoding="utf-8")
    proc = run([str(installed), "quick_start.py"], tmp_path, 60)
    assert "" == proc.stdout
    compare_json_lines(shown, proc.stderr)
    compare_json_lines(shown, (tmp_path / "logs" / "app.jsonl").read_text(encoding="utf-8"))


def test_the_readme_git_url_command_installs_the_current_commit(tmp_path: Path) -> None:
    """The README's ``git+file://localhost$PWD`` line, run by a shell in the checkout, works."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=False).returncode:
        pytest.skip("not a git checkout (an sdist)")
    (command,) = re.findall(r"```console\n(pip install \"aiolog-queue.*git\+.*)\n", README)
    directory = tmp_path / "venv"
    venv.create(directory, with_pip=True)
    env = clean_env() | {"PATH": f"{directory / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", f"{command} --quiet --disable-pip-version-check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    code = "import aiolog, orjson; print(aiolog.__file__)"  # the speedups extra came too
    where = run([str(directory / "bin" / "python"), "-c", code], tmp_path, 60).stdout.strip()
    assert Path(where).is_relative_to(directory)


def test_the_install_section_needs_no_unpublished_name() -> None:
    """No page tells a user to ``pip install aiolog-queue`` from PyPI, where it is not."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    wrong = [
        f"{page.name}: {line.strip()}"
        for page in pages
        for line in page.read_text(encoding="utf-8").splitlines()
        if re.search(r"pip install ['\"]?aiolog-queue\b(?!.*@)", line)
        and "finds nothing" not in line
    ]
    assert [] == wrong
