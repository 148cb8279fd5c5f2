"""Records as Kafka messages, one JSON value per record, through librdkafka (confluent-kafka).

::

    KafkaSink.from_url("kafka://127.0.0.1:9092/app-logs")
    KafkaSink.from_url("kafka://b1:9092,b2:9092/app-logs?compression=zstd&key_field=request_id")
    KafkaSink.from_url("kafka+tls://user:SECRET@broker:9093/logs?sasl_mechanism=SCRAM-SHA-512"
                       "&ca=/etc/ssl/internal-ca.pem")

Each record is one message on ``TOPIC``: the :class:`aiolog.formatting.JSONFormatter` line
(another formatter may be set) as the value, and, with ``key_field=NAME``, the record's
attribute ``NAME`` (an ``extra=`` field, ``name`` for the logger...) or else its context
variable ``NAME`` as the key (UTF-8 text; no key when the record has neither).

Requires the ``kafka`` extra (``pip install 'aiolog-queue[kafka]'``, which installs
`confluent-kafka <https://github.com/confluentinc/confluent-kafka-python>`_); a URL that
needs it fails at configure time with a :class:`ValueError` saying so. Why librdkafka
rather than aiokafka: docs/design.md.

**Delivery.** A record counts as written only when the broker acknowledged it with the
configured ``acks`` (``all`` by default: every in-sync replica has it). The producer is
idempotent by default (``enable.idempotence``): librdkafka's retries of a batch whose
answer was lost do not duplicate it. ``write`` hands the batch to librdkafka (on the
listener loop: ``produce()`` only queues) and waits, on the sink's worker thread, for a
delivery report per record; records reported failed are counted as dropped.

**Failures.** librdkafka reconnects by itself with the sink's backoff (``backoff_initial``
doubling to ``backoff_max``, jittered) and retries what it had sent; while no broker can be
reached the batch waits in ``write``, as with the other network sinks, and the records
logged meanwhile wait in the listener's buffer. Unlike a TCP connect, a Kafka produce has
no "nothing was sent" answer: a record not acknowledged within ``delivery_timeout``
seconds (30) is counted as dropped (it may or may not be in the topic), and the next batch
gets a new producer (a broker restarted without its data refuses the old producer id
forever). A fatal producer error fails what librdkafka held, counted, likewise. At
``stop()``'s deadline what is still held is purged from librdkafka and counted as dropped,
so nothing is sent after being counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

from aiolog._urls import redact_url
from aiolog.sinks._net import (
    COMMON_OPTIONS,
    TLS_OPTIONS,
    NetworkSink,
    context_items,
    parse_bool,
    parse_seconds,
    url_options,
)

__all__ = ["KafkaSink"]

_DEFAULT_PORT: Final = 9092
_ACKS: Final = {"all": "all", "-1": "all", "1": "1", "0": "0"}
_COMPRESSION: Final = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})
_SASL: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
#: How long one wait of the worker thread for delivery reports lasts before it looks
#: again whether the batch was abandoned (``stop()``'s deadline).
_POLL: Final = 0.1
#: Default seconds a record may wait for its acknowledgement.
DELIVERY_TIMEOUT: Final = 30.0
#: librdkafka's ``RD_KAFKA_RESP_ERR__MSG_TIMED_OUT``.
_MSG_TIMED_OUT: Final = -192
#: ``RD_KAFKA_RESP_ERR__FATAL``: what ``produce()`` raises once the producer is unusable.
_FATAL: Final = -150

#: Options of the ``kafka://`` URL besides :data:`COMMON_OPTIONS` (and TLS for kafka+tls).
KAFKA_OPTIONS: Final = frozenset(
    {
        "acks",
        "idempotence",
        "compression",
        "key_field",
        "delivery_timeout",
        "linger",
        "sasl_mechanism",
        "client_id",
        "format",
    }
)


def require_confluent_kafka(kind: str, url: str) -> None:
    """Raise :class:`ValueError` naming the extra to install when confluent-kafka is missing."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{kind}: {redact_url(url)!r} needs confluent-kafka: pip install 'aiolog-queue[kafka]'"
        ) from None


class _Batch:
    """Delivery reports of one ``write``, counted on the sink's worker thread."""

    __slots__ = ("abandoned", "delivered", "failed", "remaining", "timed_out")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.delivered = 0
        self.failed = 0
        self.timed_out = 0
        self.abandoned = False


class KafkaSink(NetworkSink):
    """Produce each record as a message to a Kafka topic; written means acknowledged.

    :param bootstrap: ``host:port[,host:port...]`` of one or more brokers.
    :param topic: the topic (created by the broker on first use if it allows that).
    :param acks: ``all`` (default), ``1`` or ``0`` (no acknowledgement: a record counts as
        written once librdkafka sent it).
    :param idempotence: librdkafka's idempotent producer (default on; needs ``acks=all``).
    :param compression: ``none`` (default), ``gzip``, ``snappy``, ``lz4`` or ``zstd``.
    :param key_field: the record attribute, else context variable, used as message key.
    :param delivery_timeout: seconds a record may wait for its acknowledgement, broker
        down or not, before it is counted as dropped (default 30).
    :param linger: seconds librdkafka waits to fill a message batch (default 0.005).
    :param tls: connect with TLS (``kafka+tls://``), with ``ca``, ``cert``, ``key``,
        ``verify``.
    :param username, password: SASL credentials (``sasl_mechanism`` PLAIN by default,
        ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``).
    :param format: ``json`` (default), ``logfmt`` or ``text`` values.
    :param options: ``level``, ``connect_timeout``, ``write_timeout`` (librdkafka's
        request timeout), ``backoff_initial``, ``backoff_max``.
    """

    kind = "KafkaSink"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        acks: str | int = "all",
        idempotence: bool | str | None = None,
        compression: str = "none",
        key_field: str | None = None,
        delivery_timeout: float | str = DELIVERY_TIMEOUT,
        linger: float | str = 0.005,
        client_id: str | None = None,
        tls: bool = False,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        verify: bool | str = True,
        username: str | None = None,
        password: str | None = None,
        sasl_mechanism: str | None = None,
        format: str | None = None,
        url: str | None = None,
        **options: Any,
    ) -> None:
        shown = url or f"kafka://{bootstrap}/{topic}"
        require_confluent_kafka(self.kind, shown)
        super().__init__(**options)
        if not bootstrap or not topic or "/" in topic:
            raise ValueError(f"{self.kind}: {redact_url(shown)!r} needs brokers and a topic")
        acks_text = _ACKS.get(str(acks).strip().lower())
        if acks_text is None:
            raise ValueError(f"{self.kind}: bad acks={acks!r}: expected all, 1 or 0")
        self.acks = acks_text
        if idempotence is None:
            self.idempotence = self.acks == "all"
        else:
            self.idempotence = parse_bool(self.kind, "idempotence", idempotence)
        if self.idempotence and self.acks != "all":
            raise ValueError(
                f"{self.kind}: idempotence=true needs acks=all (an idempotent producer waits "
                "for all in-sync replicas)"
            )
        if compression not in _COMPRESSION:
            raise ValueError(
                f"{self.kind}: bad compression={compression!r}: expected one of "
                f"{', '.join(sorted(_COMPRESSION))}"
            )
        self.topic = topic
        self.key_field = key_field or None
        self.delivery_timeout = parse_seconds(self.kind, "delivery_timeout", delivery_timeout)
        linger_seconds = (
            0.0
            if str(linger).strip() in ("0", "0.0")
            else parse_seconds(self.kind, "linger", linger)
        )
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": self.acks,
            "enable.idempotence": self.idempotence,
            "compression.type": compression,
            "linger.ms": linger_seconds * 1000,
            "message.timeout.ms": max(1, int(self.delivery_timeout * 1000)),
            "socket.connection.setup.timeout.ms": int(self.connect_timeout * 1000),
            "request.timeout.ms": int(self.write_timeout * 1000),
            "reconnect.backoff.ms": max(1, int(self.backoff.initial * 1000)),
            "reconnect.backoff.max.ms": max(1, int(self.backoff.maximum * 1000)),
            "retry.backoff.ms": max(1, int(self.backoff.initial * 1000)),
            "retry.backoff.max.ms": max(1, int(self.backoff.maximum * 1000)),
            "client.id": client_id or "aiolog",
            # librdkafka logs to stderr by default; its errors reach error_cb (counted,
            # last_error) instead.
            "log_level": 0,
        }
        secure = tls or ca is not None or cert is not None
        if not tls and (ca or cert or key or verify is not True):
            raise ValueError(f"{self.kind}: TLS options need a kafka+tls:// URL")
        if tls:
            verify_on = parse_bool(self.kind, "verify", verify)
            for option, path in (("ca", ca), ("cert", cert), ("key", key)):
                if path is not None:
                    _check_file(self.kind, option, path)
            if key is not None and cert is None:
                raise ValueError(f"{self.kind}: bad key='***': a client key needs cert= as well")
            if ca is not None:
                config["ssl.ca.location"] = ca
            if cert is not None:
                config["ssl.certificate.location"] = cert
            if key is not None:
                config["ssl.key.location"] = key
            config["enable.ssl.certificate.verification"] = verify_on
            config["ssl.endpoint.identification.algorithm"] = "https" if verify_on else "none"
        mechanism = (sasl_mechanism or ("PLAIN" if username is not None else "")).upper()
        if mechanism:
            if mechanism not in _SASL:
                raise ValueError(
                    f"{self.kind}: bad sasl_mechanism={sasl_mechanism!r}: expected one of "
                    f"{', '.join(sorted(_SASL))}"
                )
            if username is None:
                raise ValueError(f"{self.kind}: SASL needs user:password@ in the URL")
            config["sasl.mechanism"] = mechanism
            config["sasl.username"] = username
            config["sasl.password"] = password or ""
        config["security.protocol"] = (
            ("sasl_ssl" if secure else "sasl_plaintext") if mechanism else
            ("ssl" if secure else "plaintext")
        )  # fmt: skip
        self._secrets = [s for s in (password,) if s and len(s) >= 4]
        self.config = config
        if format is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(format)
        # (redact_url hides every option named like "key": key_field names no secret)
        self.url = redact_url(shown).replace(
            "key_field=***", f"key_field={urllib.parse.quote(key_field or '')}"
        )
        self._producer: Any = None
        #: Why the producer must be replaced before the next batch: a fatal error (set on
        #: the worker thread; what it holds is then purged) or records that timed out.
        self._broken: str | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KafkaSink:
        """Build from ``kafka://host[:9092][,host2:port]/TOPIC?OPTIONS`` or ``kafka+tls://``.

        Query options: ``acks``, ``idempotence``, ``compression``, ``key_field``,
        ``delivery_timeout``, ``linger``, ``sasl_mechanism``, ``client_id``, ``format``,
        timeouts, backoff, and for ``kafka+tls`` ``ca``, ``cert``, ``key``, ``verify``;
        ``user:password@`` gives SASL credentials. Keyword ``options`` override the query.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("kafka", "kafka+tls"):
            raise ValueError(
                f"{cls.kind}: expected kafka:// or kafka+tls://, not {redact_url(url)!r}"
            )
        tls = scheme == "kafka+tls"
        known = (
            COMMON_OPTIONS | KAFKA_OPTIONS | (TLS_OPTIONS - {"server_hostname"} if tls else set())
        )
        merged = url_options(cls.kind, url, options, known)
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        brokers = []
        for item in hostlist.split(","):
            host, port = _hostport(cls.kind, url, item.strip())
            brokers.append(f"{host}:{port}")
        topic = urllib.parse.unquote(parts.path.lstrip("/"))
        if not topic:
            raise ValueError(
                f"{cls.kind}: the URL {redact_url(url)!r} names no topic "
                "(expected kafka://host:port/TOPIC)"
            )
        username = password = None
        if userinfo:
            name, _, secret = userinfo.partition(":")
            username, password = urllib.parse.unquote(name), urllib.parse.unquote(secret)
        return cls(
            ",".join(brokers),
            topic,
            tls=tls,
            username=username,
            password=password,
            url=url,
            **merged,
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- the producer -----------------------------------------------------------------------

    def _on_error(self, error: Any) -> None:
        """librdkafka's error callback (worker thread): count it; remember a fatal one."""
        self.note_error(f"KafkaError: {error.str()}")
        if error.fatal():
            self._broken = error.str()
        else:
            self.retries += 1  # librdkafka reconnects and retries by itself

    def _make_producer(self) -> Any:
        """A new producer (worker thread: the constructor reads certificate files)."""
        from confluent_kafka import Producer

        return Producer({**self.config, "error_cb": self._on_error})

    def _delivered(self, batch: _Batch, error: Any, message: Any) -> None:
        """One delivery report (worker thread, inside ``flush()``)."""
        batch.remaining -= 1
        if error is None:
            batch.delivered += 1
        else:
            batch.failed += 1
            if error.code() == _MSG_TIMED_OUT:
                batch.timed_out += 1
            self.note_error(f"KafkaError: {error.str()}")

    def _wait(self, producer: Any, batch: _Batch) -> None:
        """Serve delivery reports until the batch is settled or abandoned (worker thread)."""
        purged = False
        while batch.remaining > 0 and not batch.abandoned:
            producer.flush(_POLL)
            if self._broken is not None and not purged:
                # The producer can deliver nothing more: fail what it holds (each report
                # then says so, and counts) instead of waiting for it forever.
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                purged = True

    def _key(self, record: logging.LogRecord) -> bytes | None:
        name = self.key_field
        if name is None:
            return None
        value = record.__dict__.get(name)
        if value is None:
            value = getattr(record, name, None)
        if value is None:
            for var, captured in context_items(record):
                if var == name:
                    value = captured
                    break
        return None if value is None else str(value).encode("utf-8", "backslashreplace")

    def _encode(self, record: logging.LogRecord) -> tuple[bytes | None, bytes]:
        return self._key(record), self.format(record).encode("utf-8", "backslashreplace")

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Produce the batch and wait for its delivery reports; return the records lost."""
        loop = asyncio.get_running_loop()
        payloads = list(self.render(records, self._encode))
        lost = len(records) - len(payloads)
        if not payloads:
            return lost
        if self._broken is not None:
            await self._discard()
        if self._producer is None:
            self._producer = await loop.run_in_executor(self.executor, self._make_producer)
            self.connects += 1
        producer = self._producer
        batch = _Batch(len(payloads))

        def report(error: Any, message: Any) -> None:
            self._delivered(batch, error, message)

        try:
            for key, value in payloads:
                while True:
                    try:
                        producer.produce(self.topic, value, key, on_delivery=report)
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        await loop.run_in_executor(self.executor, producer.flush, _POLL)
                    except Exception as exc:  # a message too large, a fatal state...
                        batch.remaining -= 1
                        batch.failed += 1
                        self.note_error(f"KafkaError: {exc}")
                        error = exc.args[0] if exc.args else None
                        if getattr(error, "fatal", lambda: False)() or (
                            getattr(error, "code", lambda: None)() == _FATAL
                        ):
                            # A producer in a fatal state refuses every message, and its
                            # error callback may not have run yet: replace it next batch.
                            self._broken = str(exc)
                        break
            await loop.run_in_executor(self.executor, self._wait, producer, batch)
        except BaseException:
            batch.abandoned = True  # stop()'s deadline: aclose() purges what is left
            raise
        if batch.delivered:
            self.backoff.reset()
        if batch.timed_out and self._broken is None:
            # A producer that delivered nothing in delivery_timeout may be stuck for good
            # (a broker restarted without its data rejects its producer id forever): the
            # next batch gets a new one, with a producer id the broker knows.
            self._broken = f"{batch.timed_out} records not acknowledged in time"
        return lost + batch.failed

    async def _discard(self) -> None:
        """Drop a broken producer (fatal error, timeouts); the next batch makes a new one."""
        producer, self._producer = self._producer, None
        self._broken = None
        if producer is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, _destroy, [producer])
            del producer

    async def aclose(self) -> None:
        """Purge what librdkafka still holds (already counted as dropped) and close."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        holder = [producer]
        del producer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, _destroy, holder)

    def after_fork(self) -> None:
        """Forget the parent's producer (its threads do not exist in the child)."""
        self._producer = None
        self._broken = None
        super().after_fork()


def _destroy(holder: list[Any]) -> None:
    """Purge and destroy a producer on the worker thread (destroying it may block)."""
    producer = holder.pop()
    with contextlib.suppress(Exception):
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
    del producer


def _check_file(kind: str, option: str, path: str) -> None:
    import os

    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        shown = "***" if option == "key" else path
        raise ValueError(f"{kind}: bad {option}={shown!r}: not a readable file")


def _hostport(kind: str, url: str, item: str) -> tuple[str, int]:
    """``host[:port]`` of one broker (IPv6 in brackets)."""
    safe = redact_url(url)
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"{kind}: the URL {safe!r} names no broker host")
    if ":" in host:
        host = f"[{host}]"  # librdkafka's form of an IPv6 literal
    if not port_text:
        return host, _DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{kind}: bad port {port_text!r} in {safe!r}: expected 1-65535")
    return host, int(port_text)
