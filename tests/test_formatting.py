"""aiolog.formatting: the record dict, the JSON encoder, and the JSON/logfmt/text formatters."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import datetime
import decimal
import enum
import json
import logging
import logging.config
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aiolog import _encode, formatting
from aiolog.formatting import (
    JSONFormatter,
    LogfmtFormatter,
    TextFormatter,
    dumps,
    formatter_for,
    record_to_dict,
)

LOGGER = "aiolog.tests.formatting"
#: 2026-11-24T21:25:22.123456Z
CREATED = datetime.datetime(2026, 11, 24, 21, 25, 22, 123456, datetime.timezone.utc).timestamp()
BASE_KEYS = ["timestamp", "level", "logger", "message", "task", "coro", "thread", "process"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user")
private_var: contextvars.ContextVar[str] = contextvars.ContextVar("_private")


class CustomError(Exception):
    """An exception defined outside builtins, to see its module-qualified name."""


class BrokenStr:
    """An object whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


class BrokenRepr:
    """An object whose ``__repr__`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BrokenStrError(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


class Color(enum.Enum):
    """An enum, encoded as its value."""

    RED = "red"


Point = collections.namedtuple("Point", "x y")


class ListHandler(logging.Handler):
    """Keeps every record, and its text if it has a formatter; dictConfig builds it too."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.formatter is not None:  # the tests format bad records themselves
            self.lines.append(self.format(record))


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A private logger with a ListHandler; its handlers are removed afterwards."""
    log = logging.getLogger(LOGGER)
    saved = (log.handlers[:], log.level, log.propagate)
    log.handlers[:] = [ListHandler()]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers[:], level, log.propagate = saved
        log.setLevel(level)


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with orjson, then with the stdlib json fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(_encode, "_orjson", None)
    else:
        pytest.importorskip("orjson")
    name: str = request.param
    return name


def captured(log: logging.Logger) -> logging.LogRecord:
    """The single record the test logged through the ``logger`` fixture."""
    handler = log.handlers[0]
    assert isinstance(handler, ListHandler)
    assert 1 == len(handler.records)
    return handler.records[0]


def make_record(
    msg: object = "hello %s",
    args: Any = ("world",),
    *,
    level: int = logging.INFO,
    exc_info: Any = None,
    extra: dict[str, Any] | None = None,
    sinfo: str | None = None,
    **attributes: Any,
) -> logging.LogRecord:
    """A record made by ``Logger.makeRecord``, then given ``attributes``."""
    record = logging.getLogger(LOGGER).makeRecord(
        LOGGER, level, "/app/module.py", 42, msg, args, exc_info, "handler", extra, sinfo
    )
    record.__dict__.update(attributes)
    return record


def aiolog_record(**attributes: Any) -> logging.LogRecord:
    """A record with what aiolog's emit path and listener add, at a fixed time."""
    fields: dict[str, Any] = {
        "created": CREATED,
        "process": 123,
        "threadName": "MainThread",
        "taskName": "fetch-42",
        "aiolog_coro": "fetch",
        "aiolog_callback": None,
        "aiolog_context": contextvars.Context(),
    }
    fields.update(attributes)
    extra = fields.pop("extra", None)
    return make_record(extra=extra, **fields)


def exc_info_of(exc: BaseException) -> Any:
    """``sys.exc_info()`` for ``exc``, raised and caught (so it has a traceback)."""
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def in_context(**values: Any) -> contextvars.Context:
    """A real context in which the named module-level variables are set."""
    variables = {"request_id": request_id, "user": user_var, "_private": private_var}

    def set_all() -> None:
        for name, value in values.items():
            variables[name].set(value)

    ctx = contextvars.Context()
    ctx.run(set_all)
    return ctx


ALL_FORMATTERS: list[Callable[[], logging.Formatter]] = [
    JSONFormatter,
    LogfmtFormatter,
    TextFormatter,
]
FORMATTER_IDS = ["json", "logfmt", "text"]


# ---------------------------------------------------------------------------- record_to_dict


def test_plain_record_has_the_base_keys_in_order() -> None:
    """A record without exception, context or extras has exactly the eight base keys."""
    record = make_record()
    data = record_to_dict(record)
    assert BASE_KEYS == list(data)
    assert "info" == data["level"]
    assert LOGGER == data["logger"]
    assert "hello world" == data["message"]
    assert data["task"] is None
    assert data["coro"] is None
    assert threading.current_thread().name == data["thread"]
    assert os.getpid() == data["process"]


def test_record_without_task_name_attribute() -> None:
    """A plain LogRecord without taskName (as on 3.10/3.11) gives task None."""
    record = logging.LogRecord(LOGGER, logging.WARNING, "/x.py", 1, "plain", None, None)
    record.__dict__.pop("taskName", None)
    data = record_to_dict(record)
    assert BASE_KEYS == list(data)
    assert data["task"] is None
    assert "warning" == data["level"]


def test_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    """The timestamp is UTC, with six fractional digits and a Z."""
    data = record_to_dict(aiolog_record())
    assert "2026-11-24T21:25:22.123456Z" == data["timestamp"]


def test_timestamp_round_trips_through_fromisoformat() -> None:
    """Parsing the timestamp back gives the record's creation time to the microsecond."""
    record = make_record()
    parsed = datetime.datetime.fromisoformat(
        record_to_dict(record)["timestamp"].replace("Z", "+00:00")
    )
    assert datetime.timezone.utc == parsed.tzinfo
    assert record.created == pytest.approx(parsed.timestamp(), abs=1e-6)


def test_timestamp_cache_follows_the_second() -> None:
    """Records from consecutive seconds get their own second, not a cached one."""
    first = record_to_dict(aiolog_record(created=CREATED + 0.87))["timestamp"]
    second = record_to_dict(aiolog_record(created=CREATED + 1.0))["timestamp"]
    again = record_to_dict(aiolog_record(created=CREATED))["timestamp"]
    assert "2026-11-24T21:25:22.993456Z" == first
    assert "2026-11-24T21:25:23.123456Z" == second
    assert "2026-11-24T21:25:22.123456Z" == again


def test_timestamp_rounds_into_the_next_second() -> None:
    """A time 0.4 µs before a second boundary rounds to .000000 of the next second."""
    boundary = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    data = record_to_dict(aiolog_record(created=boundary - 4e-7))
    assert "2026-01-01T00:00:00.000000Z" == data["timestamp"]


def test_custom_level_names_are_lower_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """A level added with addLevelName, and an unnamed one, are reported in lower case."""
    monkeypatch.setitem(logging._levelToName, 25, "NOTICE")  # what addLevelName does
    monkeypatch.setitem(logging._nameToLevel, "NOTICE", 25)
    assert "notice" == record_to_dict(make_record(level=25))["level"]
    assert "level 33" == record_to_dict(make_record(level=33))["level"]


def test_listener_rendered_message_is_used() -> None:
    """``record.message`` set by the listener wins over rendering ``msg % args`` again."""
    record = make_record("hello %s", ("world",), message="rendered by the listener")
    assert "rendered by the listener" == record_to_dict(record)["message"]


def test_wrong_argument_count_still_gives_a_message() -> None:
    """``logger.info("%s %s", 1)`` yields the raw format and arguments, not an exception."""
    message = record_to_dict(make_record("%s %s", (1,)))["message"]
    assert message.startswith("%s %s [aiolog: could not format message: TypeError")
    assert "args=(1,)" in message


def test_task_coro_and_callback() -> None:
    """The emit path's task, coroutine and callback attributes become fields."""
    data = record_to_dict(aiolog_record(aiolog_callback="Pool._reap"))
    assert "fetch-42" == data["task"]
    assert "fetch" == data["coro"]
    assert [*BASE_KEYS, "callback"] == list(data)
    assert "Pool._reap" == data["callback"]


def test_task_name_set_by_logging_inside_a_task(logger: logging.Logger) -> None:
    """A record logged inside an asyncio task carries the task's name (3.12+ sets it)."""
    import asyncio

    async def work() -> None:
        logger.info("in a task")

    async def main() -> None:
        await asyncio.create_task(work(), name="worker-1")

    asyncio.run(main())
    record = captured(logger)
    expected = "worker-1" if sys.version_info >= (3, 12) else None
    assert expected == record_to_dict(record)["task"]


def test_location_adds_file_line_function_after_process() -> None:
    """location=True adds file, line and function right after the base keys."""
    data = record_to_dict(make_record(), location=True)
    assert [*BASE_KEYS, "file", "line", "function"] == list(data)
    assert ("/app/module.py", 42, "handler") == (data["file"], data["line"], data["function"])


def test_exception_from_logger_exception(logger: logging.Logger) -> None:
    """logger.exception() gives type, message and the rendered traceback."""
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("failed")
    exception = record_to_dict(captured(logger))["exception"]
    assert ["type", "message", "traceback"] == list(exception)
    assert "ValueError" == exception["type"]
    assert "bad value" == exception["message"]
    assert exception["traceback"].startswith("Traceback (most recent call last):\n")
    assert exception["traceback"].endswith("ValueError: bad value")


def test_exception_type_is_module_qualified() -> None:
    """A non-builtin exception type is named with its module."""
    data = record_to_dict(make_record(exc_info=exc_info_of(CustomError("x"))))
    assert f"{__name__}.CustomError" == data["exception"]["type"]


def test_exception_chain_is_rendered() -> None:
    """An exception raised ``from`` another shows both, and the cause, in the traceback."""
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise CustomError("outer") from inner
    except CustomError:
        exc_info = sys.exc_info()
    traceback_text = record_to_dict(make_record(exc_info=exc_info))["exception"]["traceback"]
    assert "KeyError: 'inner'" in traceback_text
    assert "The above exception was the direct cause of the following exception" in traceback_text
    assert traceback_text.endswith("CustomError: outer")


def test_listener_rendered_traceback_is_used() -> None:
    """``exc_text`` set by the listener is the traceback; type and message stay structured."""
    record = make_record(exc_info=exc_info_of(ValueError("v")), exc_text="pre-rendered")
    expected = {"type": "ValueError", "message": "v", "traceback": "pre-rendered"}
    assert expected == record_to_dict(record)["exception"]


def test_exc_text_without_exc_info() -> None:
    """A record that lost exc_info (pickled, say) still reports its traceback text."""
    record = make_record(exc_text="Traceback ...\nValueError: v")
    expected = {"type": None, "message": None, "traceback": "Traceback ...\nValueError: v"}
    assert expected == record_to_dict(record)["exception"]


def test_empty_exc_info_means_no_exception() -> None:
    """``exc_info == (None, None, None)`` (logger.exception outside except) adds nothing."""
    assert "exception" not in record_to_dict(make_record(exc_info=(None, None, None)))


def test_unresolved_exc_info_true_is_ignored() -> None:
    """A record made directly with ``exc_info=True`` (never resolved) does not break."""
    assert BASE_KEYS == list(record_to_dict(make_record(exc_info=True)))


def test_exception_instance_as_exc_info() -> None:
    """A record made directly with an exception instance as exc_info reports it."""
    exc = exc_info_of(ValueError("inst"))[1]
    data = record_to_dict(make_record(exc_info=exc))
    assert "ValueError" == data["exception"]["type"]
    assert data["exception"]["traceback"].endswith("ValueError: inst")


def test_exception_with_broken_str() -> None:
    """An exception whose __str__ raises is reported by its repr, traceback included."""
    record = make_record(exc_info=exc_info_of(BrokenStrError("x")))
    exception = record_to_dict(record)["exception"]
    assert f"{__name__}.BrokenStrError" == exception["type"]
    assert "BrokenStrError('x')" == exception["message"]
    assert "BrokenStrError" in exception["traceback"].splitlines()[-1]


def test_stack_info(logger: logging.Logger) -> None:
    """stack_info=True puts the stack under "stack"."""
    logger.info("where am I", stack_info=True)
    record = captured(logger)
    data = record_to_dict(record)
    assert record.stack_info == data["stack"]
    assert data["stack"].startswith("Stack (most recent call last):")


def test_context_holds_public_variables_only() -> None:
    """contextvars=True keeps the app's variables, not private or interpreter ones."""
    ctx = in_context(request_id="r-1", _private="hidden")
    ctx.run(decimal.setcontext, decimal.Context(prec=5))  # sets "decimal_context"
    data = record_to_dict(aiolog_record(aiolog_context=ctx))
    assert {"request_id": "r-1"} == data["context"]


def test_context_is_sorted_by_name() -> None:
    """Context variables come out sorted by name, whatever the context's own order."""
    data = record_to_dict(aiolog_record(aiolog_context=in_context(user="ann", request_id="r")))
    assert ["request_id", "user"] == list(data["context"])


def test_context_with_selected_names() -> None:
    """A collection of names selects exactly those variables, private ones included."""
    record = aiolog_record(aiolog_context=in_context(request_id="r-1", user="ann", _private="p"))
    both = record_to_dict(record, contextvars=["user", "_private"])
    one = record_to_dict(record, contextvars="user")
    assert {"_private": "p", "user": "ann"} == both["context"]
    assert {"user": "ann"} == one["context"]


def test_context_disabled_or_empty_is_omitted() -> None:
    """contextvars=False, or nothing to show, leaves the "context" key out."""
    ctx = in_context(request_id="r-1")
    assert "context" not in record_to_dict(aiolog_record(aiolog_context=ctx), contextvars=False)
    assert "context" not in record_to_dict(aiolog_record(aiolog_context=in_context()))
    assert "context" not in record_to_dict(aiolog_record(aiolog_context=None))


def test_structlog_contextvars_appear_under_their_key() -> None:
    """Variables bound by structlog are top-level fields under their key; unbound ones absent."""
    structlog_contextvars = pytest.importorskip("structlog.contextvars")

    def bind() -> None:
        structlog_contextvars.bind_contextvars(peer="10.0.0.1", gone="x")
        structlog_contextvars.unbind_contextvars("gone")

    ctx = contextvars.Context()
    ctx.run(bind)
    data = record_to_dict(aiolog_record(aiolog_context=ctx))
    assert "10.0.0.1" == data["peer"]
    assert "context" not in data
    assert "gone" not in data


def test_extras_follow_at_top_level_in_order() -> None:
    """extra= fields come after the built-in keys, in the order given."""
    record = aiolog_record(
        aiolog_context=in_context(request_id="r-1"), extra={"user": "ann", "attempt": 2}
    )
    data = record_to_dict(record)
    assert [*BASE_KEYS, "context", "user", "attempt"] == list(data)
    assert ("ann", 2) == (data["user"], data["attempt"])


def test_colliding_extras_are_nested() -> None:
    """An extra named like a built-in key goes under "extra" instead of overwriting it."""
    record = aiolog_record(extra={"level": "custom", "context": 1, "extra": 2, "ok": True})
    data = record_to_dict(record)
    assert "info" == data["level"]
    assert True is data["ok"]
    assert {"level": "custom", "context": 1, "extra": 2} == data["extra"]
    assert "extra" == list(data)[-1]


def test_extras_keep_their_objects() -> None:
    """record_to_dict returns the extras themselves, not JSON conversions."""
    value = {"nan": float("nan")}
    assert value is record_to_dict(make_record(extra={"v": value}))["v"]


# ---------------------------------------------------------------------------- dumps


def test_dumps_nested_structure(backend: str) -> None:
    """Nested dicts and lists stay JSON structure, compact and on one line."""
    assert '{"a":[1,{"b":null}],"c":true,"d":1.5}' == dumps(
        {"a": [1, {"b": None}], "c": True, "d": 1.5}
    )


def test_dumps_non_finite_floats_are_strings(backend: str) -> None:
    """NaN and the infinities become strings, the same with both backends."""
    value = [float("nan"), float("inf"), float("-inf"), {"x": float("nan")}]
    assert '["NaN","Infinity","-Infinity",{"x":"NaN"}]' == dumps(value)


def test_dumps_lone_surrogate_is_escaped(backend: str) -> None:
    """A lone surrogate is escaped, so the line is valid UTF-8 and decodes back."""
    text = dumps({"s": "a\ud800b", "ok": "é"})
    text.encode("utf-8")
    assert "\\ud800" in text
    assert {"s": "a\ud800b", "ok": "é"} == json.loads(text)


def test_dumps_keeps_non_ascii(backend: str) -> None:
    """Non-ASCII characters are written as they are, not escaped."""
    assert '"héllo ☃"' == dumps("héllo ☃")


def test_dumps_non_string_keys(backend: str) -> None:
    """Keys that are not strings are stringified as JSON would."""
    assert '{"1":"a","null":"b","2.5":"c","(1, 2)":"d"}' == dumps(
        {1: "a", None: "b", 2.5: "c", (1, 2): "d"}
    )


def test_dumps_unknown_objects_use_repr(backend: str) -> None:
    """Objects JSON does not know become their repr; a broken repr a placeholder."""
    expected = {
        "set": "{1}",
        "bytes": "b'x'",
        "decimal": "Decimal('1.5')",
        "broken": f"<unrepresentable {__name__}.BrokenRepr object: RuntimeError>",
    }
    value = {"set": {1}, "bytes": b"x", "decimal": decimal.Decimal("1.5"), "broken": BrokenRepr()}
    assert expected == json.loads(dumps(value))


def test_dumps_types_both_backends_agree_on(backend: str) -> None:
    """Enums, dates, UUIDs, namedtuples and subclasses encode the same with both backends."""
    value = {
        "enum": Color.RED,
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 1, 2),
        "id": uuid.UUID(int=1),
        "point": Point(1, 2),
        "ordered": collections.OrderedDict(a=1),
        "big": 2**70,
    }
    expected = (
        '{"enum":"red","when":"2026-01-02T03:04:05+00:00","day":"2026-01-02",'
        '"id":"00000000-0000-0000-0000-000000000001","point":[1,2],"ordered":{"a":1},'
        '"big":1180591620717411303424}'
    )
    assert expected == dumps(value)


def test_dumps_cycles_become_markers(backend: str) -> None:
    """Self-referencing containers are cut with repr's markers instead of failing."""
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    items: list[Any] = [1]
    items.append(items)
    assert '{"name":"loop","self":"{...}"}' == dumps(cyclic)
    assert '[1,"[...]"]' == dumps(items)


def test_dumps_deep_nesting_is_cut(backend: str) -> None:
    """Nesting deeper than the limit is rendered as a repr, never a RecursionError."""
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    text = dumps(deep)
    assert text.startswith("[[[[")
    assert json.loads(text)


def test_dumps_has_no_newline(backend: str) -> None:
    """Newlines inside strings are escaped and nothing trails the object."""
    assert '{"a":"x\\ny"}' == dumps({"a": "x\ny"})


# ---------------------------------------------------------------------------- JSONFormatter


def test_json_backends_write_identical_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """orjson and the stdlib fallback produce the same line for the same record."""
    pytest.importorskip("orjson")
    record = aiolog_record(
        aiolog_context=in_context(request_id="r-1"),
        exc_info=exc_info_of(ValueError("é")),
        extra={
            "nested": {"a": [1, 2.5, None, float("-inf")], "b": {1: Color.RED}},
            "when": datetime.date(2026, 1, 2),
            "text": "naïve ☃",
            "obj": object,
        },
    )
    formatter = JSONFormatter(static_fields={"service": "api"})
    with_orjson = formatter.format(record)
    monkeypatch.setattr(_encode, "_orjson", None)
    assert with_orjson == formatter.format(record)


def test_json_formatter_exact_line(backend: str) -> None:
    """The line is the record dict as compact JSON, key order included."""
    record = aiolog_record(aiolog_context=in_context(request_id="r-1"), extra={"user": "ann"})
    expected = (
        '{"timestamp":"2026-11-24T21:25:22.123456Z","level":"info",'
        f'"logger":"{LOGGER}","message":"hello world","task":"fetch-42","coro":"fetch",'
        '"thread":"MainThread","process":123,"context":{"request_id":"r-1"},"user":"ann"}'
    )
    assert expected == JSONFormatter().format(record)


def test_json_formatter_static_fields(backend: str) -> None:
    """static_fields come after the context; an extra of the same name moves to "extra"."""
    formatter = JSONFormatter(static_fields={"service": "api", "ratio": float("inf")})
    record = aiolog_record(extra={"service": "other", "user": "ann"})
    data = json.loads(formatter.format(record))
    assert [*BASE_KEYS, "service", "ratio", "user", "extra"] == list(data)
    assert ("api", "Infinity") == (data["service"], data["ratio"])
    assert {"service": "other"} == data["extra"]


def test_json_formatter_static_fields_cannot_shadow_built_ins() -> None:
    """A static field named like a built-in key is a configuration error."""
    with pytest.raises(ValueError, match="'level'"):
        JSONFormatter(static_fields={"level": "x"})


def test_json_formatter_converts_extras(backend: str) -> None:
    """Extras and context values are converted for JSON: NaN, objects, nested values."""
    ctx = in_context(user="ann")
    record = aiolog_record(
        aiolog_context=ctx,
        extra={"nan": float("nan"), "obj": BrokenRepr(), "nested": {"a": [1, (2, 3)]}},
    )
    data = json.loads(JSONFormatter().format(record))
    assert "NaN" == data["nan"]
    assert f"<unrepresentable {__name__}.BrokenRepr object: RuntimeError>" == data["obj"]
    assert {"a": [1, [2, 3]]} == data["nested"]
    assert {"user": "ann"} == data["context"]


def test_json_formatter_exception_and_stack(backend: str) -> None:
    """Exception and stack appear in the JSON line as in record_to_dict."""
    record = make_record(exc_info=exc_info_of(ValueError("bad")), sinfo="Stack (most recent...)")
    data = json.loads(JSONFormatter().format(record))
    assert ["type", "message", "traceback"] == list(data["exception"])
    assert "bad" == data["exception"]["message"]
    assert "Stack (most recent...)" == data["stack"]


def test_json_formatter_options(backend: str) -> None:
    """contextvars and location options reach the line."""
    record = aiolog_record(aiolog_context=in_context(request_id="r", user="u"))
    data = json.loads(JSONFormatter(contextvars=["user"], location=True).format(record))
    assert {"user": "u"} == data["context"]
    assert 42 == data["line"]


def test_json_formatter_survives_a_broken_record(backend: str) -> None:
    """A record missing a standard attribute gives a minimal line with aiolog_error."""
    record = make_record()
    del record.threadName
    data = json.loads(JSONFormatter().format(record))
    assert "hello world" == data["message"]
    assert "info" == data["level"]
    assert data["aiolog_error"].startswith("record not fully formatted: AttributeError")


def test_json_formatter_multi_megabyte_message(backend: str) -> None:
    """A message of several megabytes is encoded whole."""
    message = "x" * (5 * 1024 * 1024)
    assert message == json.loads(JSONFormatter().format(make_record(message, None)))["message"]


# ---------------------------------------------------------------------------- LogfmtFormatter


def test_logfmt_exact_line() -> None:
    """The line follows the record dict with ts/msg names and quoting where needed."""
    record = aiolog_record(aiolog_context=in_context(request_id="r-1"), extra={"key": "value"})
    expected = (
        f'ts=2026-11-24T21:25:22.123456Z level=info logger={LOGGER} msg="hello world" '
        "task=fetch-42 coro=fetch thread=MainThread process=123 ctx.request_id=r-1 key=value"
    )
    assert expected == LogfmtFormatter().format(record)


def test_logfmt_omits_none_values() -> None:
    """Fields that are None are left out rather than written as None."""
    line = LogfmtFormatter().format(aiolog_record(taskName=None, aiolog_coro=None))
    assert "task=" not in line
    assert "coro=" not in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", "back\\slash"),
        ('q"\\', '"q\\"\\\\"'),
        ("line\nbreak\ttab\rcr", '"line\\nbreak\\ttab\\rcr"'),
        ("esc\x1b[0m", '"esc\\u001b[0m"'),
        ("sep\u2028par\u2029", '"sep\\u2028par\\u2029"'),
        ("lone\ud800", '"lone\\ud800"'),
        (7, "7"),
        (True, "true"),
        ({"a": [1, "b c"]}, '"{\\"a\\":[1,\\"b c\\"]}"'),
    ],
)
def test_logfmt_value_quoting(value: object, expected: str) -> None:
    """Values are quoted and escaped only when needed, and always stay on one line."""
    line = LogfmtFormatter(contextvars=False).format(aiolog_record(extra={"v": value}))
    assert f" v={expected}" == line[-len(expected) - 3 :]
    assert [line] == line.splitlines()


def test_logfmt_exception_is_one_line() -> None:
    """The exception becomes exc_type, exc_message and an escaped exc_traceback."""
    record = make_record(exc_info=exc_info_of(ValueError("bad thing")))
    line = LogfmtFormatter().format(record)
    assert 1 == len(line.splitlines())
    assert ' exc_type=ValueError exc_message="bad thing" exc_traceback="Traceback ' in line
    assert line.endswith('\\nValueError: bad thing"')


def test_logfmt_colliding_extras_are_prefixed() -> None:
    """Extras named like logfmt's own keys become extra.NAME; unsafe keys are cleaned."""
    record = aiolog_record(extra={"ts": "t", "level": "l", "ctx.x": 1, "a b": 2})
    line = LogfmtFormatter(contextvars=False).format(record)
    assert line.endswith(" process=123 extra.ctx.x=1 a_b=2 extra.ts=t extra.level=l")
    assert line.startswith("ts=2026-11-24T21:25:22.123456Z level=info ")


def test_logfmt_static_fields() -> None:
    """static_fields are written after the context variables."""
    line = LogfmtFormatter(static_fields={"service": "api"}).format(aiolog_record())
    assert line.endswith(" process=123 service=api")


def test_logfmt_is_always_one_line() -> None:
    """Newlines and Unicode line separators in message, extras and stack never split the line."""
    record = make_record(
        "multi\nline\r\n\x85message\u2028", None, extra={"k\nk": "v\x0bv"}, sinfo="Stack\nline"
    )
    line = LogfmtFormatter().format(record)
    assert [line] == line.splitlines()


# ---------------------------------------------------------------------------- TextFormatter


def test_text_exact_line_utc() -> None:
    """The text line: time, padded level, logger, message, origin in brackets, extras."""
    record = aiolog_record(extra={"key": "value"})
    expected = (
        f"2026-11-24 21:25:22.123Z INFO     {LOGGER}: hello world [task=fetch-42 coro=fetch] "
        "key=value"
    )
    assert expected == TextFormatter(utc=True).format(record)


def test_text_uses_local_time_by_default() -> None:
    """Without utc=True the time is local, to the millisecond, without a zone marker."""
    local = datetime.datetime.fromtimestamp(CREATED).strftime("%Y-%m-%d %H:%M:%S.123")
    assert TextFormatter().format(aiolog_record()).startswith(f"{local} INFO     ")


def test_text_callback_and_context_in_brackets() -> None:
    """A callback record shows [callback=...] with the context variables."""
    record = aiolog_record(
        taskName=None,
        aiolog_coro=None,
        aiolog_callback="Pool._reap",
        aiolog_context=in_context(request_id="r-1"),
    )
    line = TextFormatter().format(record)
    assert line.endswith(": hello world [callback=Pool._reap request_id=r-1]")


def test_text_without_origin_has_no_brackets() -> None:
    """A record from no task and no callback has no bracket."""
    assert TextFormatter().format(make_record()).endswith(f"INFO     {LOGGER}: hello world")


def test_text_extras_repr_non_strings() -> None:
    """Extras: plain strings bare, other values (and strings with spaces) as repr."""
    record = make_record(extra={"s": "ok", "n": 1, "sp": "a b", "bad": BrokenRepr()})
    expected = f"s=ok n=1 sp='a b' bad=<unrepresentable {__name__}.BrokenRepr object: RuntimeError>"
    assert TextFormatter().format(record).endswith(expected)


def test_text_traceback_and_stack_below() -> None:
    """The traceback and the stack follow the line, on their own lines."""
    record = make_record(exc_info=exc_info_of(ValueError("bad")), sinfo="Stack (most recent...)")
    lines = TextFormatter().format(record).splitlines()
    assert lines[0].endswith(": hello world")
    assert "Traceback (most recent call last):" == lines[1]
    assert "ValueError: bad" == lines[-2]
    assert "Stack (most recent...)" == lines[-1]


def test_text_colors(monkeypatch: pytest.MonkeyPatch) -> None:
    """colors=True colours the level and dims the time; default and NO_COLOR do not."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    record = make_record(level=logging.WARNING)
    colored = TextFormatter(colors=True).format(record)
    assert colored.startswith("\x1b[2m")
    assert "\x1b[33mWARNING \x1b[0m" in colored
    assert "\x1b[" not in TextFormatter().format(record)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in TextFormatter(colors=True).format(record)
    assert False is TextFormatter(colors=True).colors


def test_text_empty_no_color_allows_colors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty NO_COLOR does not disable colours."""
    monkeypatch.setenv("NO_COLOR", "")
    assert True is TextFormatter(colors=True).colors


def test_text_datefmt_and_location() -> None:
    """datefmt replaces the time format; location=True shows file, line and function."""
    record = aiolog_record(taskName=None, aiolog_coro=None)
    formatter = TextFormatter(datefmt="%H:%M:%S", utc=True, location=True)
    expected = f"21:25:22 INFO     {LOGGER} (module.py:42 in handler): hello world"
    assert expected == formatter.format(record)


def test_text_escapes_lone_surrogates() -> None:
    """Text output is always encodable: a lone surrogate shows as \\udXXX."""
    text = TextFormatter().format(make_record("bad \ud800 char", None))
    assert text.endswith("bad \\ud800 char")
    text.encode("utf-8")


# ---------------------------------------------------------------------------- every formatter


def broken_records() -> list[Any]:
    """Records that have broken formatters elsewhere, as pytest params."""
    plain = logging.LogRecord(LOGGER, logging.INFO, "/x.py", 1, "plain %s", ("record",), None)
    plain.__dict__.pop("taskName", None)
    try:
        try:
            raise KeyError("cause")
        except KeyError as cause:
            raise CustomError("effect") from cause
    except CustomError:
        chained = sys.exc_info()
    return [
        pytest.param(make_record({"a": 1}, None), id="dict-msg"),
        pytest.param(make_record(12345, None), id="int-msg"),
        pytest.param(make_record(BrokenStr(), None), id="broken-str-msg"),
        pytest.param(make_record(BrokenStr(), ("x",)), id="broken-str-msg-with-args"),
        pytest.param(make_record("%s %s", (1,)), id="wrong-arg-count"),
        pytest.param(make_record("%d", ("x",)), id="wrong-arg-type"),
        pytest.param(make_record("lone \ud800", None), id="lone-surrogate"),
        pytest.param(make_record("x" * 3_000_000 + "\n" * 1000, None), id="multi-megabyte"),
        pytest.param(make_record(extra={"bad": BrokenRepr(), "\udcff": "\udcff"}), id="bad-extras"),
        pytest.param(plain, id="plain-logrecord"),
        pytest.param(make_record(exc_info=chained), id="exception-chain"),
        pytest.param(make_record(exc_info=exc_info_of(BrokenStrError())), id="broken-exception"),
        pytest.param(make_record(sinfo="Stack (most recent call last):\n  here"), id="stack"),
        pytest.param(make_record(exc_info=True), id="unresolved-exc-info"),
        pytest.param(make_record(aiolog_context="not a context"), id="bad-context"),
    ]


@pytest.mark.parametrize("record", broken_records())
@pytest.mark.parametrize("make_formatter", ALL_FORMATTERS, ids=FORMATTER_IDS)
def test_formatters_never_raise(
    make_formatter: Callable[[], logging.Formatter], record: logging.LogRecord, backend: str
) -> None:
    """Every formatter turns odd records into encodable text; JSON parses, logfmt is one line."""
    formatter = make_formatter()
    text = formatter.format(record)
    text.encode("utf-8")
    if isinstance(formatter, JSONFormatter):
        assert record.name == json.loads(text)["logger"]
    if isinstance(formatter, LogfmtFormatter):
        assert [text] == text.splitlines()


def test_logged_records_with_bad_input(logger: logging.Logger) -> None:
    """Records produced by real logging calls with bad input all format."""
    logger.info("%s %s", 1)
    logger.info({"event": "dict"})
    logger.info(BrokenStr())
    records = logger.handlers[0].records  # type: ignore[attr-defined]
    messages = [json.loads(JSONFormatter().format(record))["message"] for record in records]
    assert messages[0].startswith("%s %s [aiolog: could not format message")
    assert "dict" == messages[1]  # a structlog event dict: the message is its event
    assert f"<{__name__}.BrokenStr object at" in messages[2]


@pytest.mark.parametrize("make_formatter", ALL_FORMATTERS, ids=FORMATTER_IDS)
def test_formatting_does_not_mutate_the_record(
    make_formatter: Callable[[], logging.Formatter],
) -> None:
    """Formatting leaves every attribute of the record as it was (no message, no exc_text)."""
    record = aiolog_record(
        exc_info=exc_info_of(ValueError("v")),
        sinfo="Stack",
        aiolog_context=in_context(request_id="r"),
        extra={"data": {"k": [1, float("nan")]}, "level": "x"},
    )
    before = dict(record.__dict__)
    data_before = json.dumps(record.__dict__["data"])
    make_formatter().format(record)
    assert before == record.__dict__
    assert data_before == json.dumps(record.__dict__["data"])
    assert "message" not in record.__dict__
    assert record.exc_text is None


def test_one_record_formatted_from_many_threads() -> None:
    """Formatters share no mutable state: concurrent formatting of one record agrees."""
    record = aiolog_record(
        aiolog_context=in_context(request_id="r"), extra={"n": [1, 2], "s": "x y"}
    )
    formatters = [JSONFormatter(), LogfmtFormatter(), TextFormatter(colors=True)]
    expected = [formatter.format(record) for formatter in formatters]
    mismatches: list[str] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for _ in range(200):
            for formatter, line in zip(formatters, expected, strict=True):
                text = formatter.format(record)
                if text != line:
                    mismatches.append(text)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [] == mismatches


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("name", "cls"),
    [("json", JSONFormatter), ("LOGFMT", LogfmtFormatter), ("Text", TextFormatter)],
)
def test_formatter_for_names(name: str, cls: type[logging.Formatter]) -> None:
    """formatter_for builds the named formatter, whatever the case."""
    assert cls is type(formatter_for(name))


def test_formatter_for_passes_options() -> None:
    """Options go to the formatter's constructor."""
    formatter = formatter_for("text", utc=True, colors=False)
    assert isinstance(formatter, TextFormatter)
    assert True is formatter.utc


def test_formatter_for_rejects_unknown_names() -> None:
    """An unknown name raises ValueError naming it and the valid ones."""
    with pytest.raises(ValueError, match=r"'yaml'.*'json', 'logfmt', 'text'"):
        formatter_for("yaml")


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    assert sorted(formatting.__all__) == formatting.__all__
    for name in formatting.__all__:
        assert hasattr(formatting, name)


@pytest.fixture
def dict_config_logger() -> Iterator[logging.Logger]:
    """The logger the dictConfig tests configure, emptied again afterwards."""
    log = logging.getLogger(f"{LOGGER}.dictconfig")
    try:
        yield log
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
        log.propagate = True
        log.setLevel(logging.NOTSET)


def configure(formatter: dict[str, Any], log: logging.Logger) -> ListHandler:
    """Apply a dictConfig with one formatter, on a ListHandler of ``log``."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"f": formatter},
            "handlers": {"h": {"()": f"{__name__}.ListHandler", "formatter": "f"}},
            "loggers": {log.name: {"handlers": ["h"], "level": "INFO", "propagate": False}},
        }
    )
    handler = log.handlers[0]
    assert isinstance(handler, ListHandler)
    return handler


@pytest.mark.parametrize(
    ("factory", "cls"),
    [
        ("aiolog.formatting.JSONFormatter", JSONFormatter),
        ("aiolog.formatting.LogfmtFormatter", LogfmtFormatter),
        ("aiolog.formatting.TextFormatter", TextFormatter),
        ("aiolog.JSONFormatter", JSONFormatter),
    ],
)
def test_dict_config_builds_each_formatter(
    factory: str, cls: type[logging.Formatter], dict_config_logger: logging.Logger
) -> None:
    """dictConfig builds every formatter with "()" and no arguments, and it formats."""
    handler = configure({"()": factory}, dict_config_logger)
    assert cls is type(handler.formatter)
    dict_config_logger.info("configured %s", "ok")
    assert "configured ok" in handler.lines[0]


def test_dict_config_with_options(dict_config_logger: logging.Logger) -> None:
    """Keyword options (and "format", which dictConfig passes as fmt) reach the formatter."""
    handler = configure(
        {
            "()": "aiolog.formatting.JSONFormatter",
            "format": "%(message)s",
            "static_fields": {"service": "api"},
            "contextvars": False,
            "location": True,
        },
        dict_config_logger,
    )
    dict_config_logger.info("hi")
    data = json.loads(handler.lines[0])
    assert "api" == data["service"]
    assert "test_dict_config_with_options" == data["function"]


def test_dict_config_class_form(dict_config_logger: logging.Logger) -> None:
    """The "class" form passes the stdlib arguments positionally; datefmt is honoured."""
    handler = configure(
        {"class": "aiolog.formatting.TextFormatter", "format": "%(message)s", "datefmt": "%Y"},
        dict_config_logger,
    )
    dict_config_logger.warning("careful")
    year = datetime.datetime.fromtimestamp(handler.records[0].created).strftime("%Y")
    assert handler.lines[0].startswith(f"{year} WARNING  {dict_config_logger.name}: careful")


def test_non_str_extra_keys_are_rendered() -> None:
    """extra={1: 2} (legal for logging) becomes a stringified key, not an error line."""
    record = logging.getLogger("t").makeRecord("t", logging.INFO, "f", 1, "m", None, None)
    record.__dict__[1] = 2
    assert 2 == json.loads(JSONFormatter().format(record))["1"]


# -- the cached path of JSONFormatter.format_line ------------------------------------------


def _listener_records(make: Callable[[logging.Logger], None]) -> list[logging.LogRecord]:
    """The records ``make`` logs, as the listener hands them to a sink (prepared)."""
    import aiolog
    from aiolog._queue import RecordQueue

    queue = RecordQueue()
    handler = aiolog.QueueHandler(queue)
    log = logging.getLogger("test.formatting.lines")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(1)
    try:
        make(log)
    finally:
        log.handlers.clear()
    listener = aiolog.QueueListener(queue)
    return [listener.prepare(record) for record in queue.drain(1000)]


request = contextvars.ContextVar("request_id")


def _assorted(log: logging.Logger) -> None:
    async def in_a_task() -> None:
        log.info("plain %s %d", "x", 1)
        log.warning('unicode \u2713 \u2028 "quotes" \\ back')
        log.info(
            "extras",
            extra={"user": "ann", "n": 3, "f": 1.5, "nan": float("nan"), "obj": object()},
        )
        log.info("nested extras", extra={"lst": [1, {"a": 2}], "k": {1: "one"}})
        request.set("r-1")
        log.info("with context")
        log.info("surrogate \ud800 here")
        log.info("reserved-looking extra names", extra={"thread_x": 2, "processed": 1})
        log.log(5, "custom level")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.exception("traceback")
        log.info("an int JSON cannot hold", extra={"big": 2**80})
        log.info("stack", stack_info=True)
        asyncio.get_running_loop().call_soon(lambda: log.info("from a callback"))
        await asyncio.sleep(0)

    asyncio.run(in_a_task())
    log.info("outside any loop")


@pytest.mark.skipif(_encode._orjson is None, reason="the cached path needs orjson")
@pytest.mark.parametrize(
    "options",
    [{}, {"static_fields": {"service": "api"}}, {"contextvars": False}, {"contextvars": ["x"]}],
)
def test_format_line_is_the_dict_encoded_byte_for_byte(options: dict[str, Any]) -> None:
    """The cached path writes exactly what the dict path writes, for every kind of record;
    it takes the ordinary ones and leaves the others to the dict path."""
    formatter = JSONFormatter(**options)
    records = _listener_records(_assorted)
    cached = {r.getMessage()[:20] for r in records if formatter._lines.line(r) is not None}  # type: ignore[union-attr]
    for record in records:
        assert _encode._encode_line(formatter.to_dict(record)) == formatter.format_line(record)
    assert {"plain x 1", "extras", "nested extras", "with context", "outside any loop"} <= cached
    assert not {"traceback", "stack", "from a callback"} & cached


def test_a_subclass_that_overrides_to_dict_never_takes_the_cached_path() -> None:
    """format_line goes through an overridden to_dict, so the override is honoured."""

    class Renaming(JSONFormatter):
        def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
            return {"msg": record.getMessage()}

    (record,) = _listener_records(lambda log: log.info("renamed"))
    assert b'{"msg":"renamed"}\n' == Renaming().format_line(record)
