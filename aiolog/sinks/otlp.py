"""OpenTelemetry logs over OTLP/HTTP, JSON or protobuf, to a Collector or any OTLP receiver.

::

    OtlpSink.from_url("otlp+http://127.0.0.1:4318")                 # POST /v1/logs, JSON
    OtlpSink.from_url("otlp+https://otel.example.com/v1/logs?encoding=protobuf"
                      "&compression=gzip&headers=api-key=SECRET&service_name=billing")

A batch becomes one ``ExportLogsServiceRequest``: one resource, one scope per logger
(``scopeLogs`` grouped by logger name, in order of first appearance), and for each record:

=========================  ==============================================================
``timeUnixNano``           ``record.created``; ``observedTimeUnixNano`` is the encode time
``severityNumber/Text``    as the OpenTelemetry SDK maps stdlib levels (INFO 9 ``INFO``,
                           WARNING 13 ``WARN``, CRITICAL 21 ``FATAL``, 11 is ``DEBUG2``...)
``body``                   the message (a formatter set with ``setFormatter`` replaces it)
``attributes``             ``extra=`` fields and context variables, typed (strings, ints,
                           doubles, bools, bytes, arrays, kvlists; ``None`` left out), and
                           ``code.file.path``, ``code.function.name``, ``code.line.number``,
                           ``thread.id``, ``thread.name``, ``asyncio.task.name``,
                           ``asyncio.task.coroutine``, ``asyncio.callback``,
                           ``exception.type`` (qualified), ``exception.message``,
                           ``exception.stacktrace``, ``code.stacktrace`` (``stack_info``)
``traceId``/``spanId``     the OpenTelemetry span that was current when the record was
                           logged, when ``opentelemetry-api`` is installed
=========================  ==============================================================

The resource has ``service.name`` (``service_name=``, else ``OTEL_SERVICE_NAME``, else
``OTEL_RESOURCE_ATTRIBUTES``'s, else ``unknown_service``), the other
``OTEL_RESOURCE_ATTRIBUTES``, ``process.pid`` and ``telemetry.sdk.*`` naming aiolog.
Headers come from ``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` or ``OTEL_EXPORTER_OTLP_HEADERS``,
then ``headers=`` (same ``k=v,k2=v2`` form, percent-encoded) and ``header.NAME=``.

JSON is written by hand, following the OTLP/JSON rules (64-bit integers as strings, trace
and span ids as hex); protobuf (``encoding=protobuf``) uses the official classes of
``opentelemetry-proto`` (the ``otlp`` extra: ``pip install '.[otlp]'`` in a checkout).
The retry policy is that of :class:`aiolog.sinks.http.HttpPoster` (429/502/503/504 retried,
honouring ``Retry-After``; other statuses dropped); records an answer's ``partialSuccess`` says were
rejected are counted as dropped. The configure-wide ``format=`` does not apply: OTLP
carries the fields themselves.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import time
import traceback
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from aiolog import _options
from aiolog._record import expose_context, extra_items, get_message, safe_repr
from aiolog._urls import redact_url
from aiolog.sinks._net import context_items
from aiolog.sinks.http import HTTP_OPTIONS, HttpPoster

if TYPE_CHECKING:
    import httpx

__all__ = ["OtlpSink", "otel_severity"]

_SCHEMES: Final = {"otlp+http": "http", "otlp+https": "https"}
_DEFAULT_PORT: Final = 4318
_DEFAULT_PATH: Final = "/v1/logs"
_OPTIONS: Final = HTTP_OPTIONS | {
    "encoding",
    "compression",
    "headers",
    "header.",
    "service_name",
    "format",
}
_DECADE_BASE: Final = {10: 5, 20: 9, 30: 13, 40: 17, 50: 21}
_SEVERITY_TEXT: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_INT64: Final = (-(1 << 63), (1 << 63) - 1)
_MAX_DEPTH: Final = 16


def otel_severity(levelno: int) -> int:
    """The OpenTelemetry ``SeverityNumber`` of a stdlib level, as the OpenTelemetry SDK maps it.

    10-19 are DEBUG..DEBUG4 (5-8), 20-29 INFO..INFO4 (9-12), 30-39 WARN..WARN4 (13-16),
    40-49 ERROR..ERROR4 (17-20), 50-53 FATAL..FATAL4 (21-24); within a decade the number
    goes up by one per level for the first three and stays at the fourth. Below 10 is
    UNSPECIFIED (0), above 53 FATAL4.
    """
    if levelno < 10:
        return 0
    if levelno > 53:
        return 24
    decade = levelno // 10 * 10
    return _DECADE_BASE[decade] + min(levelno - decade, 3)


def _severity_text(record: logging.LogRecord) -> str:
    return _SEVERITY_TEXT.get(record.levelname, record.levelname)


def _resource_attributes(service_name: str | None) -> dict[str, Any]:
    """``OTEL_RESOURCE_ATTRIBUTES`` and the service name (option > env > attribute)."""
    attributes: dict[str, Any] = {}
    raw = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    for item in raw.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            attributes[urllib.parse.unquote(name).strip()] = urllib.parse.unquote(value).strip()
    service = service_name or os.environ.get("OTEL_SERVICE_NAME")
    attributes["service.name"] = service or attributes.get("service.name") or "unknown_service"
    try:
        from importlib.metadata import version

        sdk_version = version("aiolog-queue")
    except Exception:
        sdk_version = "unknown"
    attributes.setdefault("telemetry.sdk.name", "aiolog")
    attributes.setdefault("telemetry.sdk.language", "python")
    attributes.setdefault("telemetry.sdk.version", sdk_version)
    return attributes


def _qualified(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return name if module in (None, "builtins") else f"{module}.{name}"


def _span_context(record: logging.LogRecord) -> tuple[bytes, bytes, int] | None:
    """``(trace_id, span_id, flags)`` of the OpenTelemetry span current at emit time."""
    context = getattr(record, "aiolog_context", None)
    if context is None:
        return None
    for var, value in context.items():
        # (a snapshot resolved to plain data for another process holds a repr() there)
        if getattr(var, "name", None) == "current_context" and isinstance(value, Mapping) and value:
            try:
                from opentelemetry import trace
            except ImportError:
                return None
            span = trace.get_current_span(value).get_span_context()  # type: ignore[arg-type]
            if not span.is_valid:
                return None
            return (
                span.trace_id.to_bytes(16, "big"),
                span.span_id.to_bytes(8, "big"),
                int(span.trace_flags),
            )
    return None


def record_attributes(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The attributes of a record, as ``(name, python value)`` pairs; see the module doc."""
    attributes: dict[str, Any] = {}
    for name, value in context_items(record):
        attributes[name] = value
    for name, value in extra_items(record):
        attributes[name] = value
    attributes["code.file.path"] = record.pathname
    attributes["code.function.name"] = record.funcName
    attributes["code.line.number"] = record.lineno
    attributes["thread.id"] = record.thread
    attributes["thread.name"] = record.threadName
    task = getattr(record, "taskName", None)
    if task is not None:
        attributes["asyncio.task.name"] = task
    coro = getattr(record, "aiolog_coro", None)
    if coro is not None:
        attributes["asyncio.task.coroutine"] = coro
    callback = getattr(record, "aiolog_callback", None)
    if callback is not None:
        attributes["asyncio.callback"] = callback
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None:
        attributes["exception.type"] = _qualified(exc_info[0])
        attributes["exception.message"] = _str(exc_info[1])
    if record.exc_text or (exc_info and exc_info[0] is not None):
        attributes["exception.stacktrace"] = record.exc_text or _render(exc_info)
    if record.stack_info:
        attributes["code.stacktrace"] = record.stack_info
    return [(k, v) for k, v in attributes.items() if v is not None]


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def _render(exc_info: Any) -> str:
    try:
        return "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception as exc:
        return f"<traceback could not be rendered: {safe_repr(exc)}>"


# ---------------------------------------------------------------------------- JSON


def any_value_json(value: Any, depth: int = 0) -> dict[str, Any]:
    """A Python value as an OTLP/JSON ``AnyValue`` (ints as strings, bytes as base64)."""
    cls = value.__class__
    if cls is str:
        return {"stringValue": value}
    if cls is bool:
        return {"boolValue": value}
    if cls is int or (isinstance(value, int) and not isinstance(value, bool)):
        number = int(value)
        if _INT64[0] <= number <= _INT64[1]:
            return {"intValue": str(number)}
        return {"stringValue": _str(number)}
    if isinstance(value, float):
        double = float(value)
        if math.isfinite(double):
            return {"doubleValue": double}
        special = "NaN" if double != double else ("Infinity" if double > 0 else "-Infinity")
        return {"doubleValue": special}
    if isinstance(value, str):
        return {"stringValue": str.__str__(value)}
    if value is None:
        return {}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if depth >= _MAX_DEPTH:
        return {"stringValue": safe_repr(value)}
    if isinstance(value, Mapping):
        return {
            "kvlistValue": {
                "values": [
                    {"key": _str(k), "value": any_value_json(v, depth + 1)}
                    for k, v in value.items()
                ]
            }
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return {"arrayValue": {"values": [any_value_json(v, depth + 1) for v in value]}}
    return {"stringValue": _str(value)}


def _attributes_json(pairs: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value_json(value)} for key, value in pairs]


# ---------------------------------------------------------------------------- protobuf


def _any_value_pb(value: Any, target: Any, depth: int = 0) -> None:
    """Fill an ``AnyValue`` message from a Python value (the JSON mapping's rules)."""
    cls = value.__class__
    if cls is str:
        target.string_value = value
    elif cls is bool:
        target.bool_value = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
        if _INT64[0] <= number <= _INT64[1]:
            target.int_value = number
        else:
            target.string_value = _str(number)
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, str):
        target.string_value = str.__str__(value)
    elif value is None:
        pass
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif depth >= _MAX_DEPTH:
        target.string_value = safe_repr(value)
    elif isinstance(value, Mapping):
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        for k, v in value.items():
            item = kvlist.values.add()
            item.key = _str(k)
            _any_value_pb(v, item.value, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        array = target.array_value
        array.SetInParent()
        for v in value:
            _any_value_pb(v, array.values.add(), depth + 1)
    else:
        target.string_value = _str(value)


def _require_proto(kind: str, url: str) -> None:
    try:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{kind}: encoding=protobuf in {redact_url(url)!r} needs opentelemetry-proto: "
            "pip install opentelemetry-proto (or install aiolog-queue with its 'otlp' extra)"
        ) from None


# ---------------------------------------------------------------------------- the sink


class OtlpSink(HttpPoster):
    """Export records as OpenTelemetry logs over OTLP/HTTP.

    :param url: the full ``http(s)://host:port/v1/logs`` endpoint (:meth:`from_url` takes
        ``otlp+http(s)://`` URLs and fills in the port and path).
    :param encoding: ``"json"`` (default, no dependency) or ``"protobuf"``.
    :param compression: ``"gzip"`` or ``"none"`` (default).
    :param headers: request headers (a mapping, or the ``k=v,k2=v2`` string form).
    :param service_name: the resource's ``service.name``.
    :param format: accepted for :func:`aiolog.configure`'s ``format=`` and ignored.
    :param options: ``token``, ``retry_timeout``, ``batch_bytes``, ``level``, timeouts,
        backoff and TLS options, as for :class:`aiolog.sinks.http.HttpSink`.
    """

    kind = "OtlpSink"
    extra = "otlp"

    def __init__(
        self,
        url: str,
        *,
        encoding: str = "json",
        compression: str | None = None,
        headers: Mapping[str, str] | str | None = None,
        service_name: str | None = None,
        format: str | None = None,
        **options: Any,
    ) -> None:
        where = f"{self.kind}()"
        encoding = _options.choice(where, "encoding", encoding, ("json", "protobuf"))
        if encoding == "protobuf":
            _require_proto(self.kind, url)
        if compression is not None:
            compression = _options.choice(where, "compression", compression, ("gzip", "none"))
        if format is not None:
            _options.choice(where, "format", format, _options.FORMATS)
        env_var = "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
        if not os.environ.get(env_var):
            env_var = "OTEL_EXPORTER_OTLP_HEADERS"
        merged_headers = _options.pairs("environment", env_var, os.environ.get(env_var, ""))
        if isinstance(headers, str):
            merged_headers.update(_options.pairs(where, "headers", headers))
        elif headers:
            merged_headers.update(headers)
        super().__init__(url, headers=merged_headers, compress=compression == "gzip", **options)
        self.encoding = encoding
        self.resource = _resource_attributes(service_name)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> OtlpSink:
        """Build from ``otlp+http://host[:4318][/v1/logs]?OPTIONS`` or ``otlp+https://``.

        Query options: ``encoding``, ``compression``, ``headers``, ``header.NAME``,
        ``service_name``, ``token``, ``retry_timeout``, ``batch_bytes``, timeouts,
        backoff and TLS options; keyword ``options`` override them.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = _SCHEMES.get(parts.scheme.lower())
        where = _options.url_where(url)
        if scheme is None:
            raise _options.OptionError(where, "scheme", parts.scheme, "otlp+http or otlp+https")
        merged = _options.merged(where, url, options, _OPTIONS)
        _, port = _options.endpoint(where, url, _DEFAULT_PORT)
        headers: dict[str, str] = {}
        given = merged.pop("headers", None)
        if isinstance(given, str):
            headers.update(_options.pairs(where, "headers", given))
        elif given:
            headers.update(given)
        for key in [k for k in merged if k.startswith("header.")]:
            headers[key[len("header.") :]] = merged.pop(key)
        netloc = parts.netloc.rpartition("@")
        hostport = netloc[2] if ":" in netloc[2].rpartition("]")[2] else f"{netloc[2]}:{port}"
        userinfo = f"{netloc[0]}@" if netloc[1] else ""
        path = parts.path if parts.path not in ("", "/") else _DEFAULT_PATH
        endpoint = urllib.parse.urlunsplit((scheme, userinfo + hostport, path, "", ""))
        with _options.located(where):
            sink = cls(endpoint, headers=headers or None, **merged)
        # headers=k=v,... usually carries an API key under a name redact_url cannot know.
        sink.url = re.sub(r"(?<=[?&])headers=[^&]*", "headers=***", redact_url(url))
        return sink

    # -- encoding ---------------------------------------------------------------------------

    def _body(self, record: logging.LogRecord) -> str:
        if self.formatter is not None:
            expose_context(record)
            return self.formatter.format(record)
        message = record.__dict__.get("message")
        return message if message.__class__ is str else get_message(record)

    def _resource_pairs(self) -> list[tuple[str, Any]]:
        return [*self.resource.items(), ("process.pid", os.getpid())]

    def encode_json(self, records: Sequence[logging.LogRecord]) -> bytes:
        """The batch as an OTLP/JSON ``ExportLogsServiceRequest``."""
        from aiolog.formatting import dumps

        observed = str(time.time_ns())
        scopes: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            item: dict[str, Any] = {
                "timeUnixNano": str(int(record.created * 1e9)),
                "observedTimeUnixNano": observed,
                "severityNumber": otel_severity(record.levelno),
                "severityText": _severity_text(record),
                "body": {"stringValue": self._body(record)},
                "attributes": _attributes_json(record_attributes(record)),
            }
            span = _span_context(record)
            if span is not None:
                item["traceId"] = span[0].hex()
                item["spanId"] = span[1].hex()
                item["flags"] = span[2]
            scopes.setdefault(record.name, []).append(item)
        request = {
            "resourceLogs": [
                {
                    "resource": {"attributes": _attributes_json(self._resource_pairs())},
                    "scopeLogs": [
                        {"scope": {"name": name}, "logRecords": items}
                        for name, items in scopes.items()
                    ],
                }
            ]
        }
        return dumps(request).encode("utf-8")

    def encode_protobuf(self, records: Sequence[logging.LogRecord]) -> bytes:
        """The batch as a serialized ``ExportLogsServiceRequest`` (opentelemetry-proto)."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        for key, value in self._resource_pairs():
            attribute = resource_logs.resource.attributes.add()
            attribute.key = key
            _any_value_pb(value, attribute.value)
        observed = time.time_ns()
        scopes: dict[str, Any] = {}
        for record in records:
            scope_logs = scopes.get(record.name)
            if scope_logs is None:
                scope_logs = scopes[record.name] = resource_logs.scope_logs.add()
                scope_logs.scope.name = record.name
            item = scope_logs.log_records.add()
            item.time_unix_nano = int(record.created * 1e9)
            item.observed_time_unix_nano = observed
            item.severity_number = otel_severity(record.levelno)
            item.severity_text = _severity_text(record)
            item.body.string_value = self._body(record)
            for key, value in record_attributes(record):
                attribute = item.attributes.add()
                attribute.key = key
                _any_value_pb(value, attribute.value)
            span = _span_context(record)
            if span is not None:
                item.trace_id, item.span_id, item.flags = span
        data: bytes = request.SerializeToString()
        return data

    def rejected(self, response: httpx.Response, count: int) -> int:
        """Records ``partialSuccess.rejectedLogRecords`` says the receiver refused."""
        content = response.content
        if not content:
            return 0
        if self.encoding == "protobuf":
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
                ExportLogsServiceResponse,
            )

            answer = ExportLogsServiceResponse.FromString(content)
            rejected = int(answer.partial_success.rejected_log_records)
            message = answer.partial_success.error_message
        else:
            partial = response.json().get("partialSuccess") or {}
            rejected = int(partial.get("rejectedLogRecords") or 0)
            message = partial.get("errorMessage") or ""
        if rejected:
            self.note_error(f"partial success: {rejected} records rejected: {message}".rstrip(": "))
        return rejected

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Export the batch in requests of about ``batch_bytes``; return the records lost."""
        lost = 0
        group: list[logging.LogRecord] = []
        estimate = 0
        for record in records:
            size = 300 + len(self._body(record)) + len(record.exc_text or "")
            if group and estimate + size > self.batch_bytes:
                lost += await self._export(group)
                group, estimate = [], 0
            group.append(record)
            estimate += size
        if group:
            lost += await self._export(group)
        return lost

    async def _export(self, records: Sequence[logging.LogRecord]) -> int:
        try:
            if self.encoding == "protobuf":
                data, content_type = self.encode_protobuf(records), "application/x-protobuf"
            else:
                data, content_type = self.encode_json(records), "application/json"
        except Exception as exc:  # a bug or a hostile value: lose this request, say why
            self.note_error(exc)
            return len(records)
        return await self.post(data, content_type, len(records))
