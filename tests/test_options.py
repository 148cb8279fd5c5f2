"""The one grammar of settings (aiolog._options): each kind of value, and the error wording."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest

from aiolog import OptionError, _options


def error(call: Any, *args: Any, **kwargs: Any) -> OptionError:
    with pytest.raises(OptionError) as info:
        call(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------------------- wording


def test_wording_names_where_setting_value_and_what_is_accepted() -> None:
    """``<where>: bad <setting>=<value!r>: expected <accepted>``, with its parts as attributes."""
    exc = error(_options.count, "configure()", "queue_size", 0)
    assert "configure(): bad queue_size=0: expected an integer >= 1" == str(exc)
    assert ("configure()", "queue_size", 0) == (exc.where, exc.setting, exc.value)
    assert isinstance(exc, ValueError)


def test_unknown_option_lists_the_known_ones() -> None:
    """An unknown option says so and lists the known ones, sorted; prefixes read ``NAME``."""
    exc = error(_options.check_known, "sink 'x'", ["colour"], {"level", "format", "header."})
    assert "sink 'x': unknown option 'colour': expected one of format, header.NAME, level" == str(
        exc
    )


def test_at_restates_the_error_where_the_user_wrote_it() -> None:
    """``at()`` keeps setting, value and expectation and changes only the place."""
    exc = error(_options.boolean, "FileSink", "colors", "maybe").at("sink 'stderr?colors=maybe'")
    assert str(exc).startswith("sink 'stderr?colors=maybe': bad colors='maybe': expected true")


def test_located_restates_errors_raised_in_the_block() -> None:
    """``located(where)`` turns any OptionError of the block into one said at ``where``."""
    with (
        pytest.raises(OptionError, match=r"^environment: bad level="),
        _options.located("environment"),
    ):
        _options.level("FileSink", "level", "LOUD")


def test_secret_values_are_never_shown() -> None:
    """The value of a secret-looking option (token, key, headers...) is shown as ``***``."""
    exc = error(_options.count, "sink 'x'", "token", "hunter2")
    assert "hunter2" not in str(exc)
    assert "bad token='***'" in str(exc)


def test_option_errors_pickle() -> None:
    """An OptionError survives pickling (multiprocessing, concurrent.futures)."""
    exc = error(_options.size, "configure()", "queue_bytes", "lots")
    assert str(exc) == str(pickle.loads(pickle.dumps(exc)))


# ---------------------------------------------------------------------------- bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *((word, True) for word in ("1", "true", "True", "YES", "on", " On ")),
        *((word, False) for word in ("0", "false", "FALSE", "no", "off")),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_bool_accepts_one_set_of_spellings(value: object, expected: bool) -> None:
    """1/0, true/false, yes/no, on/off in any case, and Python's bools."""
    assert expected is _options.boolean("w", "b", value)


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, None, "y", 1.0])
def test_bool_refuses_anything_else(value: object) -> None:
    """Anything else is refused, listing the accepted spellings."""
    exc = error(_options.boolean, "w", "b", value)
    assert f"w: bad b={value!r}: expected true or false (also 1/0, yes/no, on/off)" == str(exc)


# ---------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (512, 512),
        ("2048", 2048),
        ("10B", 10),
        ("64K", 64 << 10),
        ("64KB", 64 << 10),
        ("64kib", 64 << 10),
        ("10MB", 10 << 20),
        ("10 MiB", 10 << 20),
        ("1.5MiB", 3 << 19),
        ("1.5GB", 3 << 29),
        (".5k", 512),
    ],
)
def test_size_units_are_binary_and_decimals_allowed(value: object, expected: int) -> None:
    """Bytes, with K/M/G units of 1024 whatever the spelling (10MB = 10 MiB), decimals too."""
    assert expected == _options.size("w", "s", value)


@pytest.mark.parametrize("value", ["lots", "10TB", "-1", "", "1e3", True, 1.5, None, "MB"])
def test_size_refuses_what_is_not_a_size(value: object) -> None:
    """Words, unknown units, negatives, floats and bools are refused, naming the grammar."""
    exc = error(_options.size, "w", "s", value)
    assert f"w: bad s={value!r}: expected a size in bytes" in str(exc)
    assert "'10MB' = 10 MiB" in str(exc)


def test_size_bounds_are_said() -> None:
    """A size out of range names the bounds."""
    exc = error(_options.size, "S", "max_size", "10", low=480, high=65507)
    assert str(exc).endswith("10 MiB), from 480 to 65507")
    assert 0 == _options.size("S", "x", "0", low=0)
    error(_options.size, "S", "x", 0)


# ---------------------------------------------------------------------------- duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (2, 2.0), (0.25, 0.25), ("1.5", 1.5), ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0)],
)
def test_duration_is_seconds_with_optional_units(value: object, expected: float) -> None:
    """Seconds as a number, or with ms/s/m/h."""
    assert expected == _options.duration("w", "d", value)
    assert 3600.0 == _options.duration("w", "d", "1H")


@pytest.mark.parametrize("value", [-1, "-1", float("nan"), float("inf"), "x", "2 days", True, None])
def test_duration_refuses_negative_infinite_and_words(value: object) -> None:
    """Negative, NaN, infinite, bools and words are refused."""
    exc = error(_options.duration, "w", "d", value)
    assert f"w: bad d={value!r}: expected a duration in seconds" in str(exc)
    assert str(exc).endswith(">= 0")


def test_duration_positive_refuses_zero() -> None:
    """``positive=True`` settings (timeouts a sink waits for) refuse 0."""
    exc = error(_options.duration, "w", "connect_timeout", "0", positive=True)
    assert str(exc).endswith("> 0")


# ---------------------------------------------------------------------------- count


def test_count_reads_integers_within_bounds() -> None:
    """Integers or their digits; bounds are said when refused."""
    assert 5 == _options.count("w", "keep", "5", low=0)
    assert 0 == _options.count("w", "keep", 0, low=0)
    assert "w: bad n=0: expected an integer >= 1" == str(error(_options.count, "w", "n", 0))
    exc = error(_options.count, "w", "n", 24, low=0, high=23)
    assert "w: bad n=24: expected an integer from 0 to 23" == str(exc)
    for bad in (True, 1.0, "1.0", "-3", "", None):
        error(_options.count, "w", "n", bad)


# ---------------------------------------------------------------------------- level


@pytest.mark.parametrize(
    ("value", "expected"),
    [("INFO", 20), ("info", 20), (" Warning ", 30), ("warn", 30), ("5", 5), (0, 0), (35, 35)],
)
def test_level_accepts_names_in_any_case_and_non_negative_ints(
    value: object, expected: int
) -> None:
    """Registered level names in any case, or integers >= 0."""
    assert expected == _options.level("w", "level", value)


@pytest.mark.parametrize("value", ["LOUD", -5, "-5", True, 1.5, None, ""])
def test_level_refuses_unknown_names_and_negatives(value: object) -> None:
    """An unknown name or a negative number is refused, listing the names."""
    message = str(error(_options.level, "w", "level", value))
    assert message.startswith(f"w: bad level={value!r}: expected a level name (CRITICAL, ERROR,")
    assert message.endswith("DEBUG, NOTSET; any case) or an integer >= 0")


def test_level_knows_levels_added_with_addlevelname() -> None:
    """A level registered with logging.addLevelName is a name like the others."""
    logging.addLevelName(25, "NOTICE")
    try:
        assert 25 == _options.level("w", "level", "notice")
    finally:
        del logging._levelToName[25]  # type: ignore[attr-defined]
        del logging._nameToLevel["NOTICE"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- choice, port


def test_choice_is_case_insensitive_and_returns_the_canonical_spelling() -> None:
    """Any case is accepted; the value comes back as the choices spell it."""
    assert "drop_oldest" == _options.choice("w", "overflow", "DROP_OLDEST", ("drop_oldest",))
    exc = error(_options.choice, "w", "format", "xml", _options.FORMATS)
    assert "w: bad format='xml': expected one of json, logfmt, text" == str(exc)


@pytest.mark.parametrize("value", ["0", "65536", "12a", "-1", 0, True])
def test_port_is_1_to_65535(value: object) -> None:
    """Ports outside 1-65535 (or not numbers) are refused."""
    assert f"bad port={value!r}" in str(error(_options.port, "w", "port", value))
    assert 514 == _options.port("w", "port", "514")


# ---------------------------------------------------------------------------- endpoint


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:5170", ("127.0.0.1", 5170)),
        ("syslog+udp://LogHost", ("loghost", 514)),
        ("tcp://[::1]:9", ("::1", 9)),
        ("https://user:secret@example.com:8443/x?y=1", ("example.com", 8443)),
    ],
)
def test_endpoint_returns_host_and_port(url: str, expected: tuple[str, int]) -> None:
    """Host (IPv6 without brackets) and port, the default port when none is given."""
    assert expected == _options.endpoint("S", url, 514)


@pytest.mark.parametrize("port", ["99999", "0", "12a", "-1"])
def test_endpoint_names_a_bad_port(port: str) -> None:
    """An out-of-range or non-numeric port is refused, and named."""
    exc = error(_options.endpoint, "S", f"syslog+tcp://host:{port}", 514)
    assert f"S: bad port={port!r}: expected an integer from 1 to 65535" == str(exc)


def test_endpoint_needs_a_host_and_a_required_port() -> None:
    """No host is refused; with no default port the URL must give one."""
    assert "names no host" in str(error(_options.endpoint, "S", "tcp://user:hunter2@:80", 1))
    assert "bad port=''" in str(error(_options.endpoint, "S", "tcp://h", None))


# ---------------------------------------------------------------------------- query


def test_query_reads_known_options_once() -> None:
    """Known options come back as strings; ``header.`` admits every ``header.NAME``."""
    known = {"a", "header."}
    assert {"a": "1", "header.X-Key": "k"} == _options.query("S", "h://x?a=1&header.X-Key=k", known)
    assert {} == _options.query("S", "stderr", known)


def test_query_refuses_unknown_and_repeated_options_hiding_secrets() -> None:
    """A typo lists the known options; a repeated option is refused; secrets stay hidden."""
    exc = error(_options.query, "S", "https://h/?verfy=false&token=abc", {"verify", "token"})
    assert "S: unknown option 'verfy': expected one of token, verify" == str(exc)
    exc = error(_options.query, "S", "https://h/?token=abc&token=def", {"token"})
    assert "abc" not in str(exc)
    assert "def" not in str(exc)
    assert "bad token=" in str(exc)


def test_merged_keyword_options_win_and_are_checked_too() -> None:
    """Keyword options override the query, and an unknown keyword is refused like a query key."""
    assert {"a": 2} == _options.merged("S", "h://x?a=1", {"a": 2}, {"a"})
    assert "unknown option 'b'" in str(error(_options.merged, "S", "h://x", {"b": 1}, {"a"}))


def test_url_where_quotes_the_url_and_redacts_secrets() -> None:
    """A sink's ``<where>`` is the URL as written, with passwords and tokens redacted."""
    assert "sink 'file:app.log?rotate=1'" == _options.url_where("file:app.log?rotate=1")
    where = _options.url_where("https://u:pw@h/?token=abc")
    assert "pw" not in where
    assert "abc" not in where
