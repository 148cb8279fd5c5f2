"""OtlpSink payloads decoded by the official opentelemetry-proto classes and compared with
what the OpenTelemetry SDK (LoggingHandler + the official OTLP encoder) makes of the same
records; delivery through ``aiolog.configure`` to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import pytest

import aiolog
from aiolog.sinks.otlp import OtlpSink
from tests.helpers import run
from tests.integration.peers import http_peer, in_ci

for _module in ("opentelemetry.proto", "opentelemetry.sdk", "opentelemetry.exporter.otlp"):
    try:
        __import__(_module)
    except ImportError:  # the test extra installs them: on CI their absence is a failure
        if in_ci():
            raise
        pytest.skip(f"{_module} is not installed", allow_module_level=True)

from google.protobuf import json_format  # noqa: E402
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def make_records() -> list[logging.LogRecord]:
    """A varied set of real records: levels, typed extras, an exception, a task, loggers."""
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            captured.append(record)

    keep = Keep()
    loggers = [logging.getLogger("shop.orders"), logging.getLogger("shop.db")]
    for log in loggers:
        log.addHandler(keep)
        log.setLevel(1)
        log.propagate = False
    try:
        orders, db = loggers
        orders.info("order %s placed", "o-1", extra={"user": "ann", "items": 3, "total": 9.5})
        db.debug("query took %d ms", 12, extra={"ok": True, "tags": ["a", "b"]})
        orders.log(25, "custom level")
        orders.warning("stock low ☃", extra={"sku": {"id": 7, "name": "x"}})
        try:
            raise ValueError("bad quantity")
        except ValueError:
            orders.exception("failed")
        db.critical("down")

        async def in_task() -> None:
            db.error("from a task")

        async def main() -> None:
            await asyncio.create_task(in_task(), name="worker-1")

        asyncio.run(main())
    finally:
        for log in loggers:
            log.removeHandler(keep)
            log.setLevel(logging.NOTSET)
            log.propagate = True
    return [r for r in captured if r.name.startswith("shop")]


def sdk_request(records: Sequence[logging.LogRecord]) -> ExportLogsServiceRequest:
    """What the OpenTelemetry SDK exports for ``records``."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():  # the SDK's handler is deprecated, still the reference
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    for record in records:
        handler.handle(record)
    provider.shutdown()
    request: ExportLogsServiceRequest = encode_logs(exporter.get_finished_logs())
    return request


def python(value: AnyValue) -> Any:
    """An AnyValue as a Python value, for comparisons."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def flatten(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Every log record of a request with its scope, attributes as a dict."""
    out = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for item in scope_logs.log_records:
                out.append(
                    {
                        "scope": scope_logs.scope.name,
                        "time": item.time_unix_nano,
                        "severity_number": item.severity_number,
                        "severity_text": item.severity_text,
                        "body": python(item.body),
                        "attributes": {a.key: python(a.value) for a in item.attributes},
                    }
                )
    return sorted(out, key=lambda r: r["time"])


def strict_parse(body: bytes) -> ExportLogsServiceRequest:
    """Parse OTLP/JSON with json_format (unknown fields fail), ids converted hex -> base64."""
    document = json.loads(body)
    for resource_logs in document["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for item in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in item:
                        item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    return json_format.Parse(json.dumps(document), ExportLogsServiceRequest())


def export(url: str, records: Sequence[logging.LogRecord]) -> None:
    """Write ``records`` as one batch through an OtlpSink built from ``url``."""
    sink = OtlpSink.from_url(url)

    async def main() -> None:
        assert 0 == await sink.write(records)
        await sink.aclose()

    run(main)


def compare(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Same records, scopes, severities, bodies; the SDK's attributes all present and equal."""
    assert len(theirs) == len(ours)
    for mine, reference in zip(ours, theirs, strict=True):
        for key in ("scope", "time", "severity_number", "severity_text", "body"):
            assert reference[key] == mine[key], key
        for name, value in reference["attributes"].items():
            assert name in mine["attributes"], name
            if name == "exception.stacktrace":  # ours without the final newline
                assert value.rstrip("\n") == mine["attributes"][name]
            else:
                assert value == mine["attributes"][name], name


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_payload_matches_the_opentelemetry_sdk(encoding: str) -> None:
    """Decoded with the official classes, our export equals the SDK's on what the SDK sets."""
    records = make_records()
    assert 7 == len(records)
    with http_peer() as peer:
        export(f"otlp+http://127.0.0.1:{peer.port}?encoding={encoding}", records)
        (request,) = peer.requests
    assert "/v1/logs" == request.path
    if encoding == "json":
        assert "application/json" == request.headers["content-type"]
        ours = strict_parse(request.body)
    else:
        assert "application/x-protobuf" == request.headers["content-type"]
        ours = ExportLogsServiceRequest.FromString(request.body)
    compare(flatten(ours), flatten(sdk_request(records)))
    scopes = [s.scope.name for s in ours.resource_logs[0].scope_logs]
    assert ["shop.orders", "shop.db"] == scopes
    mine = flatten(ours)
    # Python 3.12+ names the task in the record itself (aiolog's handler does it on 3.10/3.11).
    task = records[-1].__dict__.get("taskName")
    assert task == mine[-1]["attributes"].get("asyncio.task.name")
    assert "ValueError" == mine[4]["attributes"]["exception.type"]


def test_json_and_protobuf_encodings_agree() -> None:
    """The hand-written JSON and the protobuf encoding carry the same request."""
    records = make_records()
    with http_peer() as peer:
        export(f"otlp+http://127.0.0.1:{peer.port}?encoding=json&service_name=svc", records)
        export(f"otlp+http://127.0.0.1:{peer.port}?encoding=protobuf&service_name=svc", records)
        as_json, as_protobuf = (
            strict_parse(peer.requests[0].body),
            ExportLogsServiceRequest.FromString(peer.requests[1].body),
        )
    for request in (as_json, as_protobuf):  # observed times differ by the encode time
        for scope_logs in request.resource_logs[0].scope_logs:
            for item in scope_logs.log_records:
                item.observed_time_unix_nano = 0
    assert as_protobuf == as_json
    resource = {a.key: python(a.value) for a in as_json.resource_logs[0].resource.attributes}
    assert "svc" == resource["service.name"]
    assert "aiolog" == resource["telemetry.sdk.name"]


def test_configure_delivers_and_counts_through_the_pipeline() -> None:
    """Via configure(): 503 then 200 delivers once; a 400 is dropped and counted."""
    answers = [(503, {}, b""), (200, {}, b""), (400, {}, b"schema")]
    with http_peer(answers) as peer:
        url = f"otlp+http://127.0.0.1:{peer.port}?backoff_initial=0.01&service_name=shop"
        with aiolog.configure([url]) as pipeline:
            logging.getLogger("shop").warning("first")
            assert pipeline.flush(10)
            logging.getLogger("shop").warning("second")
            assert pipeline.flush(10) is False  # the 400 lost it
            stats = pipeline.stats()["sinks"][url]
        bodies = [strict_parse(r.body) for r in peer.requests]
    assert (1, 1) == (stats["written"], stats["dropped"])
    records = [flatten(b)[0] for b in bodies]
    messages = [r["body"] for r in records if r["scope"] != "aiolog"]
    assert ["first", "first", "second"] == messages  # the 503'd try, its retry, the 400'd one
    notices = [r["body"] for r in records if r["scope"] == "aiolog"]
    assert notices  # the loss is said in the sink's own output (it accepts again after 400)
    assert "this sink: 1 to errors (last error: HTTP 400" in notices[0]
    sink = pipeline.sinks[0]
    assert isinstance(sink, OtlpSink)
    assert 1 == sink.retries
    assert sink.last_error is not None
    assert sink.last_error.startswith("HTTP 400 Scripted: schema")


def test_strict_parse_rejects_unknown_fields() -> None:
    """The check is strict: an unknown field in OTLP/JSON fails to parse."""
    with pytest.raises(json_format.ParseError):
        strict_parse(b'{"resourceLogs": [{"scopeLogs": [], "bogus": 1}]}')
