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
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

from aiolog import _options
from aiolog._urls import redact_url
from aiolog.sinks._net import COMMON_OPTIONS, TLS_OPTIONS, NetworkSink, context_items

__all__ = ["KafkaSink"]

_DEFAULT_PORT: Final = 9092
_ACKS: Final = {"all": "all", "-1": "all", "1": "1", "0": "0"}
_COMPRESSION: Final = ("none", "gzip", "snappy", "lz4", "zstd")
_SASL: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
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
            f"{kind}: {redact_url(url)!r} needs confluent-kafka: pip install confluent-kafka "
            "(or install aiolog-queue with its 'kafka' extra)"
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
        # The option parsing, in one place: everything librdkafka is told is decided here,
        # and all of it before logging.Handler.__init__ registers a half-built handler.
        where = f"{self.kind}()"
        if not bootstrap:
            _options.fail(where, "bootstrap", bootstrap, "host:port[,host:port...]")
        if not topic or "/" in topic:
            _options.fail(where, "topic", topic, "a topic name")
        self.acks = _ACKS[_options.choice(where, "acks", str(acks), ("all", "-1", "1", "0"))]
        if idempotence is None:
            self.idempotence = self.acks == "all"
        else:
            self.idempotence = _options.boolean(where, "idempotence", idempotence)
        if self.idempotence and self.acks != "all":
            _options.fail(where, "idempotence", idempotence, "false unless acks=all")
        compression = _options.choice(where, "compression", compression, _COMPRESSION)
        fmt = _options.log_format(where, format)
        self.topic = topic
        self.key_field = key_field or None
        self.delivery_timeout = _options.duration(
            where, "delivery_timeout", delivery_timeout, positive=True
        )
        linger_seconds = _options.duration(where, "linger", linger)
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": self.acks,
            "enable.idempotence": self.idempotence,
            "compression.type": compression,
            "linger.ms": linger_seconds * 1000,
            "message.timeout.ms": max(1, int(self.delivery_timeout * 1000)),
            "client.id": client_id or "aiolog",
            # librdkafka logs to stderr by default; its errors reach error_cb (counted,
            # last_error) instead.
            "log_level": 0,
        }
        if not tls:
            for option, value in (("ca", ca), ("cert", cert), ("key", key)):
                if value is not None:
                    _options.fail(where, option, value, "TLS options only with kafka+tls://")
            if verify is not True:
                _options.fail(where, "verify", verify, "TLS options only with kafka+tls://")
        else:
            verify_on = _options.boolean(where, "verify", verify)
            for option, path in (("ca", ca), ("cert", cert), ("key", key)):
                if path is not None and (not os.path.isfile(path) or not os.access(path, os.R_OK)):
                    _options.fail(where, option, path, "a readable file")
            if key is not None and cert is None:
                _options.fail(where, "key", key, "a client key together with cert=")
            if ca is not None:
                config["ssl.ca.location"] = ca
            if cert is not None:
                config["ssl.certificate.location"] = cert
            if key is not None:
                config["ssl.key.location"] = key
            config["enable.ssl.certificate.verification"] = verify_on
            config["ssl.endpoint.identification.algorithm"] = "https" if verify_on else "none"
        mechanism = None
        if sasl_mechanism is not None or username is not None:
            mechanism = _options.choice(where, "sasl_mechanism", sasl_mechanism or "PLAIN", _SASL)
            if username is None:
                _options.fail(where, "sasl_mechanism", mechanism, "user:password@ in the URL too")
            config["sasl.mechanism"] = mechanism
            config["sasl.username"] = username
            config["sasl.password"] = password or ""
        config["security.protocol"] = (
            ("sasl_ssl" if tls else "sasl_plaintext") if mechanism else
            ("ssl" if tls else "plaintext")
        )  # fmt: skip
        super().__init__(**options)  # level, timeouts, backoff: checked there
        config.update(
            {
                "socket.connection.setup.timeout.ms": int(self.connect_timeout * 1000),
                "request.timeout.ms": int(self.write_timeout * 1000),
                "reconnect.backoff.ms": max(1, int(self.backoff.initial * 1000)),
                "reconnect.backoff.max.ms": max(1, int(self.backoff.maximum * 1000)),
                "retry.backoff.ms": max(1, int(self.backoff.initial * 1000)),
                "retry.backoff.max.ms": max(1, int(self.backoff.maximum * 1000)),
            }
        )
        self._secrets = [s for s in (password,) if s and len(s) >= 4]
        #: The librdkafka configuration every producer of this sink is made with.
        self.config = config
        if fmt is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(fmt)
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
        where = _options.url_where(url)
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("kafka", "kafka+tls"):
            _options.fail(where, "scheme", parts.scheme, "kafka or kafka+tls")
        tls = scheme == "kafka+tls"
        known = (
            COMMON_OPTIONS | KAFKA_OPTIONS | (TLS_OPTIONS - {"server_hostname"} if tls else set())
        )
        merged = _options.merged(where, url, options, known)
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        brokers = []
        for item in hostlist.split(","):
            host, port = _hostport(where, item.strip())
            brokers.append(f"{host}:{port}")
        topic = urllib.parse.unquote(parts.path.lstrip("/"))
        if not topic:
            _options.fail(where, "topic", topic, "kafka://host:port/TOPIC")
        username = password = None
        if userinfo:
            name, _, secret = userinfo.partition(":")
            username, password = urllib.parse.unquote(name), urllib.parse.unquote(secret)
        with _options.located(where):
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


def _hostport(where: str, item: str) -> tuple[str, int]:
    """``host[:port]`` of one broker (an IPv6 literal in brackets, as librdkafka wants it)."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        _options.fail(where, "host", item, "host[:port] for each broker")
    if ":" in host:
        host = f"[{host}]"
    if not port_text:
        return host, _DEFAULT_PORT
    return host, _options.port(where, "port", port_text)
