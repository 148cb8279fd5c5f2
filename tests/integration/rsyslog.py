"""A real rsyslogd for the tests: its own config, ports, pid file and output, in a temp dir.

It listens on 127.0.0.1 for UDP, TCP and TLS (gtls, certificates from
:func:`tests.integration.peers.make_certs`) and writes every message it receives as one
JSON line. It is started with ``rsyslogd -n -f CONF -i PIDFILE`` and stopped by the pid
the test started. Waiting for messages polls the output file against a deadline: rsyslog
is an external process and that file is the only thing it tells us.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.peers import Certs, free_port, require_program

__all__ = ["Rsyslog"]

# One JSON object per message. format="json" escapes a property for a JSON string but
# does not quote it, hence the quotes in the constants.
_FIELDS = [
    ("msg", 'property(name="msg" format="json")'),
    ("sd", 'property(name="structured-data" format="json")'),
    ("app", 'property(name="app-name" format="json")'),
    ("host", 'property(name="hostname" format="json")'),
    ("procid", 'property(name="procid" format="json")'),
    ("msgid", 'property(name="msgid" format="json")'),
    ("severity", 'property(name="syslogseverity" format="json")'),
    ("facility", 'property(name="syslogfacility" format="json")'),
    ("time", 'property(name="timereported" dateFormat="rfc3339" format="json")'),
    ("input", 'property(name="inputname" format="json")'),
]

_CONFIG = """\
global(
    workDirectory="{workdir}"
    maxMessageSize="64k"
    parser.escapeControlCharactersOnReceive="off"
    defaultNetstreamDriverCAFile="{ca}"
    defaultNetstreamDriverCertFile="{cert}"
    defaultNetstreamDriverKeyFile="{key}"
)
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="jsonlines" type="list") {{
{template}
}}
action(type="omfile" file="{output}" template="jsonlines")
"""


def _template() -> str:
    parts = []
    for index, (name, prop) in enumerate(_FIELDS):
        prefix = "{" if index == 0 else ","
        parts.append(f'    constant(value="{prefix}\\"{name}\\":\\"") {prop}')
        parts.append('    constant(value="\\"")')
    parts.append('    constant(value="}\\n")')
    return "\n".join(parts)


class Rsyslog:
    """rsyslogd on free ports of 127.0.0.1 (``udp_port``, ``tcp_port``, ``tls_port``)."""

    def __init__(self, directory: Path, certs: Certs) -> None:
        self.rsyslogd = require_program("rsyslogd")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.udp_port = free_port()
        self.tcp_port = free_port()
        self.tls_port = free_port()
        self.output = directory / "out.jsonl"
        self.pidfile = directory / "rsyslogd.pid"
        self.config = directory / "rsyslog.conf"
        self.config.write_text(
            _CONFIG.format(
                workdir=directory,
                ca=certs.ca,
                cert=certs.server_cert,
                key=certs.server_key,
                udp=self.udp_port,
                tcp=self.tcp_port,
                tls=self.tls_port,
                template=_template(),
                output=self.output,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._probes = 0

    def start(self, timeout: float = 20.0) -> Rsyslog:
        """Start rsyslogd and wait until all three inputs take messages."""
        self.pidfile.unlink(missing_ok=True)
        with open(self.directory / "stderr.txt", "ab") as stderr:
            self.process = subprocess.Popen(
                [self.rsyslogd, "-n", "-f", str(self.config), "-i", str(self.pidfile)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        for port in (self.tcp_port, self.tls_port):
            while not self._accepts(port):
                self._check_alive(deadline)
                time.sleep(0.02)
        # UDP has no handshake: send probes until one is written out.
        self._probes += 1
        marker = f"probe-{self._probes}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while True:
                udp.sendto(f"<14>1 - - probe - - - {marker}".encode(), ("127.0.0.1", self.udp_port))
                if self.wait_for(lambda recs: any(r["msg"] == marker for r in recs), 0.1):
                    return self
                self._check_alive(deadline)

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited: {self.stderr()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"rsyslogd did not start in time: {self.stderr()}")

    def stderr(self) -> str:
        """What rsyslogd wrote to its stderr (errors, GnuTLS notices)."""
        path = self.directory / "stderr.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def records(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every message written out so far (probes left out), or those of one APP-NAME."""
        if not self.output.exists():
            return []
        records = []
        for line in self.output.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["app"] == "probe":
                continue
            if app is None or record["app"] == app:
                records.append(record)
        return records

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> bool:
        """Poll the output until ``predicate(all records, probes included)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            lines = (
                self.output.read_text(encoding="utf-8").splitlines() if self.output.exists() else []
            )
            try:
                records = [json.loads(line) for line in lines]
            except json.JSONDecodeError:  # a line being written: read again
                records = []
            if records and predicate(records):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def wait_for_app(self, app: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages of APP-NAME ``app`` arrived; return them."""
        self.wait_for(lambda recs: sum(r["app"] == app for r in recs) >= count, timeout)
        return self.records(app)

    def kill(self) -> None:
        """SIGKILL rsyslogd (a peer dying mid-stream) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM, then SIGKILL after 10 s) and reap it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
