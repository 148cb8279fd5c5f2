"""KafkaSink's URL and options: checked when the sink is built, mapped onto librdkafka's."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog.sinks.kafka import KafkaSink

pytest.importorskip("confluent_kafka")


def test_defaults_are_acks_all_idempotent_uncompressed() -> None:
    """The URL's host, port and topic; acks=all, idempotence on, no compression."""
    sink = KafkaSink.from_url("kafka://broker.example:9093/app-logs")
    assert "app-logs" == sink.topic
    assert "broker.example:9093" == sink.config["bootstrap.servers"]
    assert "all" == sink.config["acks"]
    assert sink.config["enable.idempotence"] is True
    assert "none" == sink.config["compression.type"]
    assert "plaintext" == sink.config["security.protocol"]
    assert 30_000 == sink.config["message.timeout.ms"]


def test_several_brokers_and_the_default_port() -> None:
    """A comma-separated broker list; 9092 where no port is given."""
    sink = KafkaSink.from_url("kafka://a,b:9094,[::1]/t")
    assert "a:9092,b:9094,[::1]:9092" == sink.config["bootstrap.servers"]


def test_options_map_onto_librdkafka() -> None:
    """acks, compression, timeouts and backoff become librdkafka's settings."""
    sink = KafkaSink.from_url(
        "kafka://h/t?acks=1&compression=zstd&delivery_timeout=5&linger=0"
        "&backoff_initial=0.2&backoff_max=4&connect_timeout=3&key_field=request_id"
    )
    config = sink.config
    assert ("1", False, "zstd") == (
        config["acks"],
        config["enable.idempotence"],
        config["compression.type"],
    )
    assert (5000, 0, 3000) == (
        config["message.timeout.ms"],
        config["linger.ms"],
        config["socket.connection.setup.timeout.ms"],
    )
    assert (200, 4000) == (config["reconnect.backoff.ms"], config["reconnect.backoff.max.ms"])
    assert "request_id" == sink.key_field
    assert "key_field=request_id" in sink.url  # a field name, not a secret


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://h", "bad topic=''"),
        ("kafka://h:0/t", "bad port='0'"),
        ("kafka://h/t?acks=2", "bad acks='2'"),
        ("kafka://h/t?compression=brotli", "bad compression='brotli'"),
        ("kafka://h/t?acks=1&idempotence=true", "bad idempotence='true': expected false unless"),
        ("kafka://h/t?ca=/etc/hosts", "unknown option 'ca'"),
        ("kafka+tls://h/t?ca=/nonexistent.pem", "bad ca='/nonexistent.pem': expected a readable"),
        ("kafka://h/t?sasl_mechanism=GSSAPI", "bad sasl_mechanism='GSSAPI'"),
        ("kafka://h/t?sasl_mechanism=PLAIN", "expected user:password@ in the URL too"),
        ("kafka://h/t?bogus=1", "unknown option 'bogus'"),
        ("kafka://h/t?delivery_timeout=-1", "bad delivery_timeout='-1'"),
    ],
)
def test_bad_options_fail_at_configure_time(url: str, message: str) -> None:
    """Every mistake is an OptionError naming the URL and the option, before any connect."""
    with pytest.raises(aiolog.OptionError, match=f"^sink '{re.escape(url)}': .*{message}"):
        aiolog.sink(url)


def test_tls_and_sasl(tmp_path: Path) -> None:
    """kafka+tls with credentials: SASL_SSL, CA file, verification; the password redacted."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    sink = KafkaSink.from_url(
        f"kafka+tls://ann:s3cret-pw@h:9093/t?sasl_mechanism=SCRAM-SHA-512&ca={ca}"
    )
    config = sink.config
    assert "sasl_ssl" == config["security.protocol"]
    assert ("SCRAM-SHA-512", "ann", "s3cret-pw") == (
        config["sasl.mechanism"],
        config["sasl.username"],
        config["sasl.password"],
    )
    assert str(ca) == config["ssl.ca.location"]
    assert "https" == config["ssl.endpoint.identification.algorithm"]
    assert "s3cret-pw" not in sink.url
    assert "s3cret-pw" not in repr(sink)
    sink.note_error("auth failed for s3cret-pw")
    assert "s3cret-pw" not in (sink.last_error or "")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without confluent-kafka, building the sink says which extra to install."""
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(ValueError, match=r"pip install confluent-kafka .*'kafka' extra"):
        aiolog.sink("kafka://127.0.0.1:9092/logs")


class FakeProducer:
    """A stand-in for confluent_kafka.Producer: fatal from the start, or delivering all."""

    def __init__(self, fatal: bool) -> None:
        self.fatal = fatal
        self.pending: list[Any] = []
        self.produced = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if self.fatal:
            raise KafkaException(KafkaError(KafkaError._FATAL, "fatal", fatal=True))
        self.produced += 1
        self.pending.append(on_delivery)

    def flush(self, timeout: float = 0) -> int:
        while self.pending:
            self.pending.pop(0)(None, None)
        return 0

    def purge(self, **options: Any) -> None:
        self.pending.clear()


def test_a_producer_in_a_fatal_state_is_replaced_before_the_next_batch() -> None:
    """produce() raising _FATAL loses that batch (counted) and the next one gets a new
    producer, even if librdkafka's error callback never ran."""
    sink = KafkaSink.from_url("kafka://127.0.0.1:9/t")
    made = [FakeProducer(fatal=True), FakeProducer(fatal=False)]
    sink._make_producer = lambda: made[sink.connects]  # type: ignore[method-assign]
    records = []
    for i in range(3):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "n %d", (i,), None)
        record.message = record.getMessage()
        records.append(record)

    async def main() -> tuple[int, int]:
        sink.open()
        try:
            return await sink.write(records), await sink.write(records)
        finally:
            await sink.aclose()
            sink.release()

    assert (3, 0) == asyncio.run(main())
    assert (2, 3) == (sink.connects, made[1].produced)
    assert "fatal" in (sink.last_error or "")
