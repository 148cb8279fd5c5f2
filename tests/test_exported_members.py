"""The public API is what __all__ says, sorted, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

import aiolog


def test_all_is_sorted_and_complete() -> None:
    """aiolog.__all__ is sorted, and each name is an attribute of the package."""
    assert sorted(aiolog.__all__) == aiolog.__all__
    for name in aiolog.__all__:
        assert hasattr(aiolog, name), name


def test_no_private_names_exported() -> None:
    """Nothing private leaks into __all__."""
    assert [] == [n for n in aiolog.__all__ if n.startswith("_") and n != "__version__"]


@pytest.mark.parametrize(
    "module",
    [
        "aiolog.asyncio_diag",
        "aiolog.dictconfig",
        "aiolog.formatting",
        "aiolog.pytest_plugin",
        "aiolog.sinks",
        "aiolog.structlog",
        "aiolog.testing",
    ],
)
def test_public_modules_have_sorted_all(module: str) -> None:
    """Each public module declares a sorted __all__ of existing names."""
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == mod.__all__
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_version_is_a_string() -> None:
    """__version__ comes from the installed distribution metadata."""
    assert isinstance(aiolog.__version__, str)
    assert aiolog.__version__
