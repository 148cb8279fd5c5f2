"""OtlpSink: severity mapping, typed attributes, resource and headers, partial success."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import pytest

import aiolog
from aiolog._options import pairs
from aiolog.sinks.otlp import OtlpSink, any_value_json, otel_severity
from tests.helpers import run
from tests.integration.peers import HttpPeer, http_peer

pytestmark = pytest.mark.timeout(30)


def record(
    msg: str = "hello", level: int = logging.INFO, name: str = "app", **extra: Any
) -> logging.LogRecord:
    """A record as the listener hands it to sinks (message rendered)."""
    rec = logging.getLogger(name).makeRecord(name, level, __file__, 7, msg, (), None, extra=extra)
    rec.message = rec.getMessage()
    return rec


def export(sink: OtlpSink, records: Sequence[logging.LogRecord]) -> int:
    """Write one batch and close the sink; the number of records lost."""

    async def main() -> int:
        lost = await sink.write(records)
        await sink.aclose()
        return lost

    return run(main)


def decoded(peer: HttpPeer) -> list[dict[str, Any]]:
    """The JSON bodies the peer received."""
    return [json.loads(request.body) for request in peer.requests]


def attributes(item: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON attribute list as a dict of AnyValues."""
    return {a["key"]: a["value"] for a in item["attributes"]}


# ---------------------------------------------------------------------------- mapping


def test_severity_numbers_match_the_opentelemetry_sdk() -> None:
    """Every stdlib level maps to the SeverityNumber the OpenTelemetry SDK uses."""
    from opentelemetry.sdk._logs._internal import std_to_otel

    assert [std_to_otel(level).value for level in range(70)] == [
        otel_severity(level) for level in range(70)
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", {"stringValue": "s"}),
        (True, {"boolValue": True}),
        (42, {"intValue": "42"}),
        (1 << 70, {"stringValue": str(1 << 70)}),
        (1.5, {"doubleValue": 1.5}),
        (float("nan"), {"doubleValue": "NaN"}),
        (float("-inf"), {"doubleValue": "-Infinity"}),
        (b"\x00\xff", {"bytesValue": "AP8="}),
        (None, {}),
        ([1, "a"], {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}),
        (
            {"k": {"n": False}},
            {
                "kvlistValue": {
                    "values": [
                        {
                            "key": "k",
                            "value": {
                                "kvlistValue": {
                                    "values": [{"key": "n", "value": {"boolValue": False}}]
                                }
                            },
                        }
                    ]
                }
            },
        ),
        (complex(1, 2), {"stringValue": "(1+2j)"}),
    ],
)
def test_any_value_json_types_values(value: object, expected: dict[str, Any]) -> None:
    """Python values become typed AnyValues; 64-bit ints as strings, as OTLP/JSON wants."""
    assert expected == any_value_json(value)


def test_any_value_json_stops_at_depth_and_survives_cycles() -> None:
    """A self-containing list is cut off (as a repr) instead of recursing forever."""
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    value = any_value_json(cyclic)
    for _ in range(16):
        value = value["arrayValue"]["values"][0]
    assert {"stringValue": "[[...]]"} == value


def test_parse_headers_reads_the_otel_form() -> None:
    """``k=v,k2=v2`` with percent-encoding; a pair without '=' is refused."""
    assert {"api-key": "a b", "x": "1=2"} == pairs("S", "headers", "api-key=a%20b, x=1=2,")
    with pytest.raises(ValueError, match=r"bad headers='\*\*\*': expected name=value"):
        pairs("S", "headers", "oops")


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("otlp+http://127.0.0.1", "http://127.0.0.1:4318/v1/logs"),
        ("otlp+http://127.0.0.1:1234/", "http://127.0.0.1:1234/v1/logs"),
        ("otlp+https://otel.example.com/custom/logs", "https://otel.example.com:4318/custom/logs"),
        ("otlp+http://[::1]:9", "http://[::1]:9/v1/logs"),
    ],
)
def test_urls_default_port_and_path(url: str, endpoint: str) -> None:
    """Port 4318 and path /v1/logs unless the URL says otherwise."""
    sink = aiolog.sink(url)
    assert isinstance(sink, OtlpSink)
    assert endpoint == sink.endpoint


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("otlp+http://127.0.0.1:99999", "bad port='99999'"),
        ("otlp+http://127.0.0.1?encoding=xml", "bad encoding='xml'"),
        ("otlp+http://127.0.0.1?compression=zstd", "bad compression='zstd'"),
        ("otlp+http://127.0.0.1?servce_name=x", "unknown option 'servce_name'"),
        ("otlp+http://127.0.0.1?headers=novalue", "bad headers='\\*\\*\\*': expected name=value"),
        ("otlp+grpc://127.0.0.1", "bad scheme='otlp\\+grpc'"),
    ],
)
def test_bad_settings_fail_at_construction(url: str, match: str) -> None:
    """Every mistake is a ValueError when the sink is built, naming the culprit."""
    with pytest.raises(ValueError, match=match):
        aiolog.sink(url)


def test_missing_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """protobuf without opentelemetry-proto, or no httpx: the otlp extra is named."""
    monkeypatch.setitem(sys.modules, "opentelemetry.proto.collector.logs.v1", None)
    with pytest.raises(ValueError, match=r"pip install opentelemetry-proto \(or .* 'otlp' extra\)"):
        aiolog.sink("otlp+http://127.0.0.1?encoding=protobuf")
    aiolog.sink("otlp+http://127.0.0.1")  # JSON needs no proto classes
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ValueError, match=r"needs httpx: pip install httpx \(or .* 'otlp' extra\)"):
        aiolog.sink("otlp+http://127.0.0.1")


def test_headers_come_from_env_then_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_(LOGS_)HEADERS, then headers=, then header.NAME; all redacted."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=env,b=env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=logs-env,b=logs-env")
    sink = OtlpSink.from_url("otlp+http://h?headers=b=opt,c=s3cret&header.d=x")
    for name, value in {"a": "logs-env", "b": "opt", "c": "s3cret", "d": "x"}.items():
        assert value == sink.headers[name]
    assert "s3cret" not in sink.url
    assert "headers=***" in sink.url


def test_resource_from_options_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """service_name= beats OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES' service.name."""
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.name=attr,deployment.environment=prod%201"
    )
    assert "attr" == OtlpSink.from_url("otlp+http://h").resource["service.name"]
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env")
    sink = OtlpSink.from_url("otlp+http://h")
    assert "env" == sink.resource["service.name"]
    assert "prod 1" == sink.resource["deployment.environment"]
    assert "opt" == OtlpSink.from_url("otlp+http://h?service_name=opt").resource["service.name"]
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert "unknown_service" == OtlpSink.from_url("otlp+http://h").resource["service.name"]


# ---------------------------------------------------------------------------- encoding


def test_records_are_grouped_by_logger_into_scopes() -> None:
    """One scopeLogs per logger name, in order of first appearance, records in order."""
    sink = OtlpSink("http://h/v1/logs")
    request = json.loads(
        sink.encode_json([record("1", name="a"), record("2", name="b"), record("3", name="a")])
    )
    scopes = request["resourceLogs"][0]["scopeLogs"]
    assert ["a", "b"] == [s["scope"]["name"] for s in scopes]
    assert [["1", "3"], ["2"]] == [
        [r["body"]["stringValue"] for r in s["logRecords"]] for s in scopes
    ]


def test_record_fields_and_attributes() -> None:
    """Times in ns as strings, severity, body; extras typed; code, thread, task attributes."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    context = contextvars.copy_context()  # set in a copy: the test's own context stays clean
    context.run(var.set, "r-1")
    rec = record("hi", logging.WARNING, user="ann", count=3, ratio=0.5, ok=True, skip=None)
    rec.created = 1700000000.25
    rec.taskName = "t-1"
    rec.aiolog_coro = "fetch"
    rec.aiolog_context = context
    item = json.loads(OtlpSink("http://h/").encode_json([rec]))["resourceLogs"][0]["scopeLogs"][0][
        "logRecords"
    ][0]
    assert str(int(1700000000.25 * 1e9)) == item["timeUnixNano"]  # as the SDK computes it
    assert (13, "WARN") == (item["severityNumber"], item["severityText"])
    assert {"stringValue": "hi"} == item["body"]
    attrs = attributes(item)
    assert {"stringValue": "ann"} == attrs["user"]
    assert {"intValue": "3"} == attrs["count"]
    assert {"doubleValue": 0.5} == attrs["ratio"]
    assert {"boolValue": True} == attrs["ok"]
    assert "skip" not in attrs
    assert {"stringValue": "r-1"} == attrs["request_id"]
    assert {"stringValue": __file__} == attrs["code.file.path"]
    assert {"intValue": "7"} == attrs["code.line.number"]
    assert {"stringValue": "t-1"} == attrs["asyncio.task.name"]
    assert {"stringValue": "fetch"} == attrs["asyncio.task.coroutine"]
    assert {"stringValue": "MainThread"} == attrs["thread.name"]


def test_exceptions_become_exception_attributes() -> None:
    """exception.type (qualified), exception.message and exception.stacktrace."""
    try:
        raise json.JSONDecodeError("bad", "doc", 0)
    except ValueError:
        rec = logging.getLogger("a").makeRecord("a", 40, __file__, 1, "x", (), sys.exc_info())
    attrs = attributes(
        json.loads(OtlpSink("http://h/").encode_json([rec]))["resourceLogs"][0]["scopeLogs"][0][
            "logRecords"
        ][0]
    )
    assert {"stringValue": "json.decoder.JSONDecodeError"} == attrs["exception.type"]
    assert {"stringValue": "bad: line 1 column 1 (char 0)"} == attrs["exception.message"]
    assert attrs["exception.stacktrace"]["stringValue"].startswith("Traceback")


def test_current_span_becomes_trace_and_span_ids() -> None:
    """The OpenTelemetry span current when the record was logged links the record."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        rec = record("in span")
        rec.aiolog_context = contextvars.copy_context()
        ids = span.get_span_context()
    item = json.loads(OtlpSink("http://h/").encode_json([rec]))["resourceLogs"][0]["scopeLogs"][0][
        "logRecords"
    ][0]
    assert f"{ids.trace_id:032x}" == item["traceId"]
    assert f"{ids.span_id:016x}" == item["spanId"]
    assert int(ids.trace_flags) == item["flags"]


# ---------------------------------------------------------------------------- sending


def test_partial_success_rejections_are_counted_as_lost() -> None:
    """rejectedLogRecords in a 200 answer are counted as dropped, with the reason."""
    answer = json.dumps({"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "too old"}})
    with http_peer([(200, {"Content-Type": "application/json"}, answer.encode())]) as peer:
        sink = OtlpSink.from_url(f"otlp+http://127.0.0.1:{peer.port}")
        assert 2 == export(sink, [record("a"), record("b"), record("c")])
        assert "partial success: 2 records rejected: too old" == sink.last_error


def test_partial_success_in_protobuf_answers() -> None:
    """With protobuf encoding the answer is an ExportLogsServiceResponse."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    answer = ExportLogsServiceResponse()
    answer.partial_success.rejected_log_records = 1
    with http_peer([(200, {}, answer.SerializeToString())]) as peer:
        sink = OtlpSink.from_url(f"otlp+http://127.0.0.1:{peer.port}?encoding=protobuf")
        assert 1 == export(sink, [record("a"), record("b")])
        assert "application/x-protobuf" == peer.requests[0].headers["content-type"]


def test_gzip_and_headers_are_sent() -> None:
    """compression=gzip and headers= reach the receiver."""
    with http_peer() as peer:
        sink = OtlpSink.from_url(
            f"otlp+http://127.0.0.1:{peer.port}?compression=gzip&headers=api-key=k3y"
        )
        assert 0 == export(sink, [record("zipped")])
        (request,) = peer.requests
        assert ("gzip", "k3y") == (request.headers["content-encoding"], request.headers["api-key"])
        assert "application/json" == request.headers["content-type"]
        body = decoded(peer)[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]
        assert {"stringValue": "zipped"} == body


def test_503_then_200_is_delivered_once_and_400_dropped() -> None:
    """The shared retry policy: 503 retried until 200; 400 dropped and not retried."""
    with http_peer([(503, {"Retry-After": "0"}, b""), (200, {}, b""), (400, {}, b"bad")]) as peer:
        sink = OtlpSink.from_url(f"otlp+http://127.0.0.1:{peer.port}")

        async def main() -> list[int]:
            lost = [await sink.write([record("a")]), await sink.write([record("b"), record("c")])]
            await sink.aclose()
            return lost

        assert [0, 2] == run(main)
        assert 3 == len(peer.requests)
        assert 1 == sink.retries


def test_large_batches_are_split() -> None:
    """A batch beyond batch_bytes is exported in several requests, nothing lost."""
    with http_peer() as peer:
        sink = OtlpSink.from_url(f"otlp+http://127.0.0.1:{peer.port}?batch_bytes=4096")
        assert 0 == export(sink, [record("z" * 500) for _ in range(40)])
        bodies = decoded(peer)
        assert len(bodies) > 1
        assert 40 == sum(
            len(s["logRecords"]) for b in bodies for s in b["resourceLogs"][0]["scopeLogs"]
        )


def test_an_encoding_failure_loses_only_its_request() -> None:
    """Should encoding raise, the request's records are counted lost, the sink goes on."""

    class Broken(OtlpSink):
        def encode_json(self, records: Sequence[logging.LogRecord]) -> bytes:
            raise RuntimeError("encoder bug")

    sink = Broken("http://127.0.0.1:1/v1/logs")
    assert 2 == run(sink.write([record(), record()]))
    assert "RuntimeError: encoder bug" == sink.last_error
    asyncio.run(sink.aclose())
