"""The pytest plugin aiolog installs (entry point ``pytest11``): the ``aiolog_records`` fixture.

It imports nothing of aiolog until a test asks for the fixture, so having aiolog installed
costs a test session nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aiolog.testing import Captured

__all__ = ["aiolog_records"]


@pytest.fixture
def aiolog_records() -> Iterator[Captured]:
    """The records logged during the test, as soon as they are logged.

    :func:`aiolog.testing.capture` on the root logger for the test's duration (the levels
    as the test sets them: use ``with aiolog.testing.capture("DEBUG")`` for more). Unlike
    ``caplog``, it needs no flush when :func:`aiolog.configure` routes logging through the
    queue. ``aiolog_records.records``, ``.messages``, ``.clear()``.
    """
    from aiolog.testing import capture

    with capture() as captured:
        yield captured
