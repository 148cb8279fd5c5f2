"""docs/writing-a-sink.md: its example sink works as the page says, against a real peer."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiolog
from tests.integration.peers import tcp_peer

PAGE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-sink.md"


def test_the_example_sink_delivers_through_configure() -> None:
    """The page's LineSink, used as it says, sends each record as a JSON line."""
    (code,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)
    with tcp_peer() as peer:
        pipeline = aiolog.configure([namespace["LineSink"]("127.0.0.1", peer.port)])
        logging.getLogger("app").info("hello %s", "world")
        assert pipeline.stop(5)
        assert peer.wait_for(lambda p: b'"message":"hello world"' in p.data, 5)
        stats = pipeline.stats()["sinks"][f"line://127.0.0.1:{peer.port}"]
    assert (1, 1, 0) == (stats["offered"], stats["written"], stats["dropped"])
