"""Every documented setting refuses a bad value at configure time, in one wording.

For each setting (every ``configure()`` keyword, every URL option of every sink scheme,
every ``AIOLOG_*`` environment variable, the dictConfig keys) a bad value is given by every
route where the setting exists (``configure()``, ``aiolog.sink()``, dictConfig) and the
error must read ``<where>: bad <setting>=<value!r>: expected ...``, naming the setting as
the user wrote it. The tables below are checked against the code's own lists and the docs,
so a new setting cannot be added without a case here and a line in the docs.
"""

from __future__ import annotations

import gc
import inspect
import logging
import logging.config
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import aiolog
from aiolog import OptionError, _options
from tests.test_dictconfig import causes

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    *(ROOT / "docs" / name for name in ("index.md", "sinks.md", "dictconfig.md")),
]

# ---------------------------------------------------------------------------- the tables

#: configure() keyword -> a bad value. ``sinks`` has its own cases below.
CONFIGURE: dict[str, Any] = {
    "level": -5,
    "format": "xml",
    "queue_size": 0,
    "queue_bytes": "lots",
    "sink_buffer": 1.5,
    "sink_buffer_bytes": -1,
    "stall_timeout": -1,
    "overflow": "explode",
    "block_timeout": "x",
    "capture_warnings": "maybe",
    "adopt_handlers": 2,
    "exit_timeout": float("nan"),
    "asyncio_debug": "sometimes",
    "asyncio_slow_callback": 0,
    "structlog": "yes please",
    "drain_on_sigterm": "perhaps",
    "record_factory": None,
}

#: Environment variable -> a bad value (AIOLOG_SINKS: see test_env_sinks_*).
ENVIRONMENT = {
    "AIOLOG_LEVEL": "LOUD",
    "AIOLOG_FORMAT": "yaml",
    "AIOLOG_ASYNCIO_DEBUG": "maybe",
}

_LEVEL = {"level": "LOUD"}
_NET = {
    **_LEVEL,
    "connect_timeout": "-1",
    "write_timeout": "0",
    "backoff_initial": "soon",
    "backoff_max": "1.5KB",
}
_TLS = {"ca": "/nonexistent/ca.pem", "cert": "/nonexistent/c.pem", "verify": "maybe"}
_HTTP = {**_NET, "retry_timeout": "0", "batch_bytes": "1"}
#: TLS options are known to http:// URLs only to be refused: any value is bad.
_TLS_ON_HTTP = {
    "ca": "/etc/hosts",
    "cert": "/etc/hosts",
    "key": "/etc/hosts",
    "verify": "false",
    "server_hostname": "h",
}
_SYSLOG = {
    **_NET,
    "facility": "local9",
    "framing": "nul",
    "max_size": "10",
    "bom": "maybe",
    "format": "xml",
}

_FLUENT = {
    **_NET,
    "require_ack": "maybe",
    "ack_timeout": "0",
    "retry_timeout": "soon",
    "compress": "zstd",
}

#: Sink URL (``{tmp}`` is a temporary directory) -> {URL option: a bad value}.
URL_OPTIONS: dict[str, dict[str, str]] = {
    "stderr": {"format": "xml", "colors": "maybe", **_LEVEL},
    "stdout": {"format": "xml", "colors": "on and off", **_LEVEL},
    "file:{tmp}/logs/app.log": {
        "format": "xml",
        "rotate": "lots",
        "when": "yearly",
        "keep": "-1",
        "compress": "zip",
        "mode": "999",
        "encoding": "utf-16",
        **_LEVEL,
    },
    "syslog+udp://127.0.0.1": _SYSLOG,
    "syslog+tcp://127.0.0.1": _SYSLOG,
    "syslog+tls://127.0.0.1": {**_SYSLOG, **_TLS},
    "tcp://127.0.0.1:5170": {**_NET, "format": "xml"},
    "tcp+tls://127.0.0.1:5170": {**_NET, "format": "xml", **_TLS},
    "http://127.0.0.1/in": {
        **_HTTP,
        "gzip": "maybe",
        "format": "xml",
        "headers": "novalue",
        **_TLS_ON_HTTP,
    },
    "https://127.0.0.1/in": {
        **_HTTP,
        "gzip": "maybe",
        "format": "xml",
        "headers": "novalue",
        **_TLS,
    },
    "otlp+http://127.0.0.1": {
        **_HTTP,
        "encoding": "xml",
        "compression": "zstd",
        "headers": "novalue",
        "format": "xml",
        **_TLS_ON_HTTP,
    },
    "otlp+https://127.0.0.1": {
        **_HTTP,
        "encoding": "xml",
        "compression": "zstd",
        "headers": "novalue",
        "format": "xml",
        **_TLS,
    },
    "kafka://127.0.0.1/t": {
        **_NET,
        "acks": "2",
        "idempotence": "maybe",
        "compression": "brotli",
        "delivery_timeout": "0",
        "linger": "-1",
        "sasl_mechanism": "GSSAPI",
        "format": "xml",
    },
    "kafka+tls://127.0.0.1/t": {
        **_NET,
        "acks": "2",
        "idempotence": "maybe",
        "compression": "brotli",
        "delivery_timeout": "0",
        "linger": "-1",
        "sasl_mechanism": "GSSAPI",
        "format": "xml",
        **_TLS,
    },
    "fluent://127.0.0.1/t": _FLUENT,
    "fluent+tls://127.0.0.1/t": {**_FLUENT, **_TLS},
    "journald": {
        **_LEVEL,
        "write_timeout": "0",
        "backoff_initial": "soon",
        "backoff_max": "1.5KB",
        "format": "xml",
    },
}

#: URL options that take any text (names, tokens): there is no bad value to give.
FREE_TEXT = {
    "app_name",
    "hostname",
    "token",
    "service_name",
    "server_hostname",
    "header.",
    "identifier",
    "key_field",
    "client_id",
    "shared_key",
    "username",
    "password",
}
#: ``key`` needs ``cert``; its value, a secret, is shown as ``***``.
SECRET_CASES = {
    "syslog+tls://127.0.0.1",
    "tcp+tls://127.0.0.1:5170",
    "https://127.0.0.1/in",
    "otlp+https://127.0.0.1",
    "kafka+tls://127.0.0.1/t",
    "fluent+tls://127.0.0.1/t",
}

#: Queue handler key (dictConfig) -> a bad value.
DICTCONFIG_HANDLER = {
    "maxsize": 0,
    "max_bytes": "lots",
    "overflow": "sometimes",
    "timeout": -1,
    "respect_handler_level": "maybe",
    "handlers": "sink",
    "listener": "logging.StreamHandler",
    "queue": "aiolog.no_such_queue",
}
#: ``aiolog.dictconfig.listener`` option -> a bad value.
DICTCONFIG_LISTENER = {
    "max_batch": 0,
    "linger": -1,
    "idle_after": "x",
    "buffer_size": "many",
    "buffer_bytes": 0,
    "stall_timeout": "forever",
    "report_interval": -1,
}

#: configure() keyword -> the dictConfig key of the same setting (the expectation must match).
SAME_SETTING = {
    "queue_size": ("handler", "maxsize"),
    "queue_bytes": ("handler", "max_bytes"),
    "overflow": ("handler", "overflow"),
    "block_timeout": ("handler", "timeout"),
    "sink_buffer": ("listener", "buffer_size"),
    "sink_buffer_bytes": ("listener", "buffer_bytes"),
    "stall_timeout": ("listener", "stall_timeout"),
}


# ---------------------------------------------------------------------------- helpers


def option_error(exc: BaseException) -> OptionError:
    """The OptionError an error is, or was raised from (dictConfig wraps it)."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OptionError):
            return current
        current = current.__cause__ or current.__context__
    raise AssertionError(f"no OptionError in {causes(exc)}")


def bad(setting: str, value: object) -> str:
    """The part of the message every route must say."""
    shown = "'***'" if setting in {"key", "headers"} else repr(value)
    return f": bad {setting}={shown}: expected "


def with_query(url: str, option: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}={value}"


def sink_dict(**handler: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"s": handler},
        "root": {"handlers": ["s"]},
    }


def queue_dict(form: str = "class", **keys: Any) -> dict[str, Any]:
    from aiolog.testing import CaptureSink

    sink = CaptureSink()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "sink": {"()": lambda: sink},
            "queue": {form: "aiolog.QueueHandler", "handlers": ["sink"], **keys},
        },
        "root": {"handlers": ["queue"]},
    }


#: Keys the 3.12+ configurator reads itself for a ``"class"`` queue handler (its own words).
STDLIB_KEYS = {"handlers", "listener", "queue", "respect_handler_level"}


def dictconfig_error(config: dict[str, Any]) -> OptionError:
    with pytest.raises(ValueError, match="Unable to configure handler") as info:
        logging.config.dictConfig(config)
    return option_error(info.value)


def live_handlers() -> list[logging.Handler]:
    gc.collect()
    refs: list[Any] = logging._handlerList  # type: ignore[attr-defined]
    return [h for h in (ref() for ref in refs) if h is not None]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENVIRONMENT, "AIOLOG_SINKS", "OTEL_EXPORTER_OTLP_HEADERS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", raising=False)


def url_cases() -> list[tuple[str, str, str]]:
    cases = [
        (url, option, value)
        for url, options in URL_OPTIONS.items()
        for option, value in options.items()
    ]
    cases += [(url, "key", "/nonexistent/k.pem") for url in sorted(SECRET_CASES)]
    return cases


# ---------------------------------------------------------------------------- configure()


@pytest.mark.parametrize(("keyword", "value"), CONFIGURE.items(), ids=list(CONFIGURE))
def test_configure_keyword_refuses_a_bad_value(keyword: str, value: object) -> None:
    """``configure(kw=bad)`` says ``configure(): bad kw=bad: expected ...`` and changes nothing."""
    before = logging.getLogger().handlers[:]
    with pytest.raises(OptionError) as info:
        aiolog.configure(["stderr"], **{keyword: value})
    message = str(info.value)
    assert message.startswith(f"configure(){bad(keyword, value)}"), message
    assert before == logging.getLogger().handlers
    assert aiolog.get_pipeline() is None


@pytest.mark.parametrize(
    ("sinks", "fragment"),
    [
        ("stderr", "configure(): bad sinks='stderr': expected a list"),
        ([42], "configure(): bad sinks=42: expected sink URLs"),
        (
            ["amqp://broker:5672"],
            "sink 'amqp://broker:5672': bad scheme='amqp': expected one of",
        ),
        ([""], "sink(): bad url='': expected a sink URL"),
    ],
)
def test_configure_sinks_refuses_what_is_not_a_sink(sinks: Any, fragment: str) -> None:
    """A string, a non-URL or an unknown scheme is refused, naming what was written."""
    with pytest.raises(OptionError) as info:
        aiolog.configure(sinks)
    assert str(info.value).startswith(fragment)


def test_configure_sinks_refuses_a_queue_handler() -> None:
    """A QueueHandler cannot be a sink (it would feed itself)."""
    with pytest.raises(OptionError, match=r"^configure\(\): bad sinks=.*not a QueueHandler"):
        aiolog.configure([aiolog.QueueHandler()])


# ---------------------------------------------------------------------------- environment


@pytest.mark.parametrize(("name", "value"), ENVIRONMENT.items(), ids=list(ENVIRONMENT))
def test_environment_variable_refuses_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """``AIOLOG_X=bad`` says ``environment: bad AIOLOG_X='bad': expected ...``."""
    monkeypatch.setenv(name, value)
    with pytest.raises(OptionError) as info:
        aiolog.configure(["stderr"])
    assert str(info.value).startswith(f"environment{bad(name, value)}")


def test_environment_bool_accepts_the_same_spellings_as_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``AIOLOG_ASYNCIO_DEBUG`` takes the bools every setting takes (``off`` included)."""
    monkeypatch.setenv("AIOLOG_ASYNCIO_DEBUG", "off")
    aiolog.configure(["stderr"], capture_warnings="no").stop()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("amqp://x", "sink 'amqp://x' in AIOLOG_SINKS: bad scheme='amqp': expected one of"),
        ("stderr?level=LOUD", "sink 'stderr?level=LOUD' in AIOLOG_SINKS: bad level='LOUD'"),
        (
            "stderr,stdout?colour=1",
            "sink 'stdout?colour=1' in AIOLOG_SINKS: unknown option 'colour'",
        ),
    ],
)
def test_env_sinks_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    """A bad sink in ``AIOLOG_SINKS`` is said to come from there."""
    monkeypatch.setenv("AIOLOG_SINKS", value)
    with pytest.raises(OptionError) as info:
        aiolog.configure()
    assert str(info.value).startswith(fragment)


def test_otel_headers_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed ``OTEL_EXPORTER_OTLP_HEADERS`` is named, its value (secrets) hidden."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key")
    with pytest.raises(OptionError) as info:
        aiolog.sink("otlp+http://127.0.0.1")
    assert str(info.value).startswith(
        "sink 'otlp+http://127.0.0.1': bad OTEL_EXPORTER_OTLP_HEADERS='***': expected name=value"
    )


# ---------------------------------------------------------------------------- sink URLs


@pytest.mark.parametrize(("url", "option", "value"), url_cases())
def test_url_option_refuses_a_bad_value_the_same_way_on_every_route(
    tmp_path: Path, url: str, option: str, value: str
) -> None:
    """The URL's query, a keyword of ``sink()``, configure() and dictConfig all say the same.

    ``sink '<url>': bad <option>=<value>: expected ...``; the sink refused registers no
    handler (nothing for ``logging.shutdown`` to close half-built) and creates nothing.
    """
    base = url.format(tmp=tmp_path)
    if option == "key":
        value_url = with_query(base, "key", value)
    else:
        value_url = with_query(base, option, value)
    expected = f"{_options.url_where(value_url)}{bad(option, value)}"
    before = live_handlers()

    with pytest.raises(OptionError) as info:
        aiolog.sink(value_url)
    by_sink = str(info.value)
    assert by_sink.startswith(expected), by_sink
    assert [] == [h for h in live_handlers() if h not in before]
    del info

    with pytest.raises(OptionError) as info:
        aiolog.configure([value_url])
    assert by_sink == str(info.value)
    del info

    assert by_sink == str(dictconfig_error(sink_dict(**{"()": "aiolog.sink", "url": value_url})))

    # As a keyword option: the URL is the place, the keyword the setting.
    with pytest.raises(OptionError) as info:
        aiolog.sink(base, **{option: value})
    assert str(info.value).startswith(f"sink {base!r}{bad(option, value)}")
    if option != "level":  # dictConfig takes "level" itself and checks it with the stdlib's words
        keyword = dictconfig_error(sink_dict(**{"()": "aiolog.sink", "url": base, option: value}))
        assert str(info.value) == str(keyword)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "syslog+tcp://127.0.0.1:99999",
        "tcp://127.0.0.1:0",
        "http://127.0.0.1:12a/",
        "otlp+http://h:-1",
    ],
)
def test_a_bad_port_in_the_url_is_named(url: str) -> None:
    """A port out of 1-65535 is refused, naming the URL."""
    with pytest.raises(OptionError) as info:
        aiolog.configure([url])
    assert f"sink {url!r}: bad port=" in str(info.value)
    assert str(info.value).endswith("expected an integer from 1 to 65535")


def test_tcp_needs_a_port() -> None:
    """``tcp://`` has no standard port: the URL must say it."""
    with pytest.raises(OptionError, match=r"^sink 'tcp://h': bad port='': expected a port"):
        aiolog.sink("tcp://h")


@pytest.mark.parametrize("url", [*URL_OPTIONS])
def test_unknown_url_option_lists_the_known_ones(tmp_path: Path, url: str) -> None:
    """An unknown option is refused by name, listing the options the scheme takes."""
    base = url.format(tmp=tmp_path)
    with pytest.raises(OptionError) as info:
        aiolog.sink(with_query(base, "colour", "red"))
    message = str(info.value)
    assert "unknown option 'colour': expected one of " in message
    assert sorted(known_options(base)) == known_options(base)


def known_options(url: str) -> list[str]:
    """The options a sink URL takes, as the code lists them in its refusal."""
    with pytest.raises(OptionError) as info:
        aiolog.sink(with_query(url, "zz_not_an_option", "1"))
    return info.value.expected.removeprefix("one of ").split(", ")


@pytest.mark.parametrize("url", [*URL_OPTIONS])
def test_every_url_option_the_code_knows_has_a_case_here_and_a_line_in_the_docs(
    tmp_path: Path, url: str
) -> None:
    """The code's options of each scheme = the cases above (+ free text); each is documented."""
    known = {name.removesuffix("NAME") for name in known_options(url.format(tmp=tmp_path))}
    covered = set(URL_OPTIONS[url]) | (FREE_TEXT & known)
    if url in SECRET_CASES:
        covered.add("key")
    assert (set(), set()) == (known - covered, covered - known)
    docs = documentation()
    undocumented = [name for name in known if f"`{name}" not in docs]
    assert [] == undocumented


# ---------------------------------------------------------------------------- dictConfig


@pytest.mark.parametrize("form", ["class", "()"])
@pytest.mark.parametrize(("key", "value"), DICTCONFIG_HANDLER.items(), ids=list(DICTCONFIG_HANDLER))
def test_queue_handler_key_refuses_a_bad_value(form: str, key: str, value: object) -> None:
    """``dictConfig handler 'queue': bad <key>=<value>: expected ...``.

    On 3.12+ the configurator itself resolves ``handlers``, ``listener``, ``queue`` and
    ``respect_handler_level`` of a ``"class"`` queue handler: the error is the stdlib's.
    """
    config = queue_dict(form, **{key: value})
    if form == "class" and key in STDLIB_KEYS and sys.version_info >= (3, 12):
        with pytest.raises(ValueError, match="Unable to configure handler 'queue'"):
            logging.config.dictConfig(config)
        return
    exc = dictconfig_error(config)
    assert str(exc).startswith(f"dictConfig handler 'queue'{bad(key, value)}"), str(exc)


def test_queue_handler_unknown_key_lists_the_known_ones() -> None:
    """A misspelt key is refused by name on every Python version."""
    exc = dictconfig_error(queue_dict(maxsze=10))
    assert str(exc).startswith("dictConfig handler 'queue': unknown option 'maxsze': expected")
    assert "maxsize" in exc.expected


@pytest.mark.parametrize(
    ("key", "value"), DICTCONFIG_LISTENER.items(), ids=list(DICTCONFIG_LISTENER)
)
def test_listener_option_refuses_a_bad_value(key: str, value: object) -> None:
    """``aiolog.dictconfig.listener(): bad <option>=<value>: expected ...``."""
    listener = {"()": "aiolog.dictconfig.listener", key: value}
    exc = dictconfig_error(queue_dict(listener=listener))
    assert str(exc).startswith(f"aiolog.dictconfig.listener(){bad(key, value)}"), str(exc)


@pytest.mark.parametrize(("keyword", "route"), SAME_SETTING.items(), ids=list(SAME_SETTING))
def test_configure_and_dictconfig_word_the_same_mistake_alike(
    keyword: str, route: tuple[str, str]
) -> None:
    """The same bad value of the same setting is explained in the same words on both routes."""
    kind, key = route
    value = CONFIGURE[keyword]
    with pytest.raises(OptionError) as info:
        aiolog.configure(["stderr"], **{keyword: value})
    config = (
        queue_dict(**{key: value})
        if kind == "handler"
        else queue_dict(listener={"()": "aiolog.dictconfig.listener", key: value})
    )
    assert info.value.expected == dictconfig_error(config).expected


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda: aiolog.RecordQueue(maxsize=0), "RecordQueue(): bad maxsize=0"),
        (lambda: aiolog.QueueHandler(max_bytes="x"), "QueueHandler(): bad max_bytes='x'"),
        (lambda: aiolog.QueueHandler(level="LOUD"), "QueueHandler(): bad level='LOUD'"),
        (lambda: aiolog.QueueListener(None, linger=-1), "QueueListener(): bad linger=-1"),
    ],
)
def test_constructors_say_their_own_name(call: Any, where: str) -> None:
    """Used directly, the classes refuse bad arguments in the same wording, by class name."""
    with pytest.raises(OptionError) as info:
        call()
    assert str(info.value).startswith(f"{where}: expected ")


# ---------------------------------------------------------------------------- no side effect


def test_a_refused_configure_changes_nothing(tmp_path: Path) -> None:
    """No directory, no thread, no handler, no level, no hook: all is read before anything."""
    running = aiolog.configure(["stderr"], level="WARNING")
    root = logging.getLogger()
    state = (
        root.handlers[:],
        root.level,
        logging.getLogRecordFactory(),
        warnings.showwarning,
        {t.name for t in threading.enumerate()},
    )
    target = tmp_path / "new" / "dir" / "app.log"
    for sinks, kwargs in [
        ([f"file:{target}", "stderr?level=LOUD"], {}),
        ([f"file:{target}", "amqp://x"], {}),
        ([f"file:{target}"], {"exit_timeout": -1}),
        ([f"file:{target}?rotate=10MB"], {"record_factory": "sometimes"}),
    ]:
        with pytest.raises(OptionError):
            aiolog.configure(sinks, level="DEBUG", **kwargs)
        assert not (tmp_path / "new").exists()
        assert state == (
            root.handlers[:],
            root.level,
            logging.getLogRecordFactory(),
            warnings.showwarning,
            {t.name for t in threading.enumerate()},
        )
        assert running is aiolog.get_pipeline()
    pipeline = aiolog.configure([f"file:{target}"])
    logging.getLogger("app").warning("now it is made")
    assert pipeline.flush()
    assert target.exists()


def test_file_sink_refused_for_an_unwritable_place_creates_nothing(tmp_path: Path) -> None:
    """A path under a file is refused without creating any directory."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(OptionError, match=r"bad path=.*expected a path where"):
        aiolog.sink(f"file:{tmp_path}/afile/sub/app.log")
    assert ["afile"] == [p.name for p in tmp_path.iterdir()]


# ---------------------------------------------------------------------------- docs = code


def documentation() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def test_configure_keywords_in_the_docs_are_those_of_the_code() -> None:
    """docs/index.md's signature lists exactly configure()'s keywords, and each has a case."""
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    signature = re.search(r"`aiolog\.configure\((.*?)\) -> Pipeline`", text, re.DOTALL)
    assert signature is not None
    documented = re.findall(r"(\w+)=", signature[1])
    code = list(inspect.signature(aiolog.configure).parameters)
    assert code == documented
    assert sorted(set(code) - {"sinks"}) == sorted(CONFIGURE)


def test_environment_variables_in_the_docs_are_those_of_the_code() -> None:
    """Every AIOLOG_* variable the code reads is documented and has a case, and no other."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "aiolog").rglob("*.py"))
    in_code = set(re.findall(r"\bAIOLOG_[A-Z][A-Z_]*", source))
    in_docs = set(re.findall(r"\bAIOLOG_[A-Z][A-Z_]*", documentation()))
    assert in_code == in_docs
    assert in_code == {*ENVIRONMENT, "AIOLOG_SINKS"}


def test_dictconfig_keys_in_the_docs_have_cases() -> None:
    """Every key of docs/dictconfig.md's table of queue handler keys has a case here."""
    text = (ROOT / "docs" / "dictconfig.md").read_text(encoding="utf-8")
    table = text.split("## The queue handler's keys", 1)[1].split("\n\n", 2)[1]
    keys = set(re.findall(r"^\| `(\w+)`", table, re.MULTILINE))
    applied_by_dictconfig = {"level"}  # with formatter and filters: the stdlib's own keys
    assert sorted(keys - applied_by_dictconfig) == sorted(DICTCONFIG_HANDLER)
    listener_options = re.search(r"to tune it \((.*?)\)", table)
    assert listener_options is not None
    names = set(re.findall(r"`(\w+)`", listener_options[1])) - {"name"}  # any text
    assert sorted(names) == sorted(DICTCONFIG_LISTENER)


@pytest.mark.parametrize("url", [*URL_OPTIONS])
def test_a_sink_built_and_never_opened_closes_safely(tmp_path: Path, url: str) -> None:
    """Building opens nothing, so closing (twice, as logging.shutdown may) is always safe."""
    sink = aiolog.sink(url.format(tmp=tmp_path))
    sink.close()
    sink.close()
    assert list(tmp_path.iterdir()) == []


def _examples_shown_in_the_docs() -> list[str]:
    """The example errors of docs/index.md's "Values and errors" (the second text block)."""
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(.*?)```", text, re.S)
    return [line for line in blocks[1].splitlines() if line]


def test_the_example_errors_in_the_docs_are_the_code_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each example error docs/index.md shows is what that mistake gets (up to a "...")."""
    from aiolog import RecordQueue, dictconfig

    monkeypatch.chdir(tmp_path)

    def env(name: str, value: str) -> Any:
        def call() -> None:
            monkeypatch.setenv(name, value)
            try:
                aiolog.configure()
            finally:
                monkeypatch.delenv(name)

        return call

    mistakes = [
        lambda: aiolog.configure(queue_size=0),
        lambda: aiolog.configure(level=-5),
        lambda: aiolog.sink("file:logs/app.log?rotate=lots"),
        lambda: aiolog.sink("stderr?colour=on"),
        env("AIOLOG_LEVEL", "LOUD"),
        env("AIOLOG_SINKS", "amqp://broker:5672"),
        lambda: logging.config.dictConfig(queue_dict(maxsize=0)),
        lambda: dictconfig.listener(max_batch=0),
        lambda: RecordQueue(overflow="sometimes"),  # type: ignore[arg-type]
    ]
    shown = _examples_shown_in_the_docs()
    assert len(mistakes) == len(shown)
    for mistake, line in zip(mistakes, shown, strict=True):
        with pytest.raises(ValueError) as info:
            mistake()
        message = str(option_error(info.value))
        head, dots, _ = line.partition("...")
        assert message.startswith(head) if dots else message == line, (message, line)


def test_asyncio_diag_install_reads_the_environment_in_the_same_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncio_diag.install() called directly: AIOLOG_ASYNCIO_DEBUG as configure() reads it."""
    from aiolog import asyncio_diag

    monkeypatch.setenv("AIOLOG_ASYNCIO_DEBUG", "maybe")
    with pytest.raises(OptionError, match=r"^environment: bad AIOLOG_ASYNCIO_DEBUG='maybe'"):
        asyncio_diag.install()
    monkeypatch.setenv("AIOLOG_ASYNCIO_DEBUG", "yes")
    try:
        asyncio_diag.install()
        assert asyncio_diag.installed()
    finally:
        asyncio_diag.uninstall()
    with pytest.raises(OptionError, match=r"bad slow_callback_duration=0: expected "):
        asyncio_diag.install(slow_callback_duration=0)
