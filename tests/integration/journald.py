"""Peers for the journald sink: the host's systemd-journald in a namespace, and a socket.

* :class:`Journald`: the real ``/lib/systemd/systemd-journald`` in a private mount
  namespace where a temp directory is bind-mounted over ``/run``, so it makes its socket
  and its (volatile) journal there and never touches the host's journal. It takes no
  command-line options (any argument is a namespace name that would start an instance
  under the host's ``/run``), so it is configured by ``DIR/systemd/journald.conf.d``.
  Needs root; read back with ``journalctl -D DIR/log/journal -o json --all``.
* :class:`DatagramPeer`: a Unix datagram socket that decodes the native protocol
  (memfds passed with ``SCM_RIGHTS`` included), read on a thread of its own: for the
  contract and unit tests, which run without root.

Waiting is bounded: on a condition for :class:`DatagramPeer`, by polling ``journalctl``
against a deadline for :class:`Journald` (an external process whose files are all it
tells us).
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import in_ci

__all__ = ["JOURNALD", "DatagramPeer", "Journald", "datagram_peer", "decode_entry"]

JOURNALD = "/lib/systemd/systemd-journald"

_CONFIG = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToWall=no
RateLimitBurst=0
"""


def decode_entry(data: bytes) -> list[tuple[str, bytes]]:
    """The fields of one native-protocol entry, in order (both forms of a field)."""
    fields = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            pos = end + 1
        else:  # binary form: NAME \n LE64 length, value \n
            name = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            if data[end + 9 + size : end + 10 + size] != b"\n":
                raise ValueError(f"field {name!r}: no newline after its {size} bytes")
            pos = end + 10 + size
        fields.append((name.decode("ascii"), value))
    return fields


def text(value: Any) -> str:
    """A field as ``journalctl -o json`` gives it (a string, or bytes as a list), as str."""
    if isinstance(value, list):
        return bytes(value).decode("utf-8", "replace")
    assert isinstance(value, str), value
    return value


class Journald:
    """systemd-journald with ``directory`` as its ``/run``; clients use :attr:`socket`."""

    def __init__(self, directory: Path) -> None:
        if not os.path.exists(JOURNALD) or shutil.which("journalctl") is None:
            if in_ci():
                pytest.fail(f"{JOURNALD} or journalctl is missing (.ci/run installs systemd)")
            pytest.skip(f"{JOURNALD} or journalctl is missing")
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("journald in a private mount namespace needs root and unshare")
        self.directory = directory
        conf = directory / "systemd" / "journald.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "x.conf").write_text(_CONFIG)
        self.socket = str(directory / "systemd" / "journal" / "socket")
        self.journal = directory / "log" / "journal"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Journald:
        """Start journald; return once its native socket takes datagrams."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # a stale one from the last instance refuses datagrams
        command = (
            f"mount --bind '{self.directory}' /run && exec env -u NOTIFY_SOCKET "
            f"SYSTEMD_LOG_TARGET=console {JOURNALD}"
        )
        with open(self.directory / "stderr.txt", "ab") as stderr:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-journald exited: {self.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd-journald did not start in time: {self.stderr()}")
            time.sleep(0.02)
        return self

    def _accepts(self) -> bool:
        """An empty datagram (journald ignores those) is taken: a live journald is bound."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(b"", self.socket)
            except OSError:
                return False
        return True

    def stderr(self) -> str:
        """What journald wrote to its console (its own log)."""
        path = self.directory / "stderr.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def freeze(self) -> None:
        """SIGSTOP journald: it reads nothing more, datagrams wait in its socket."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL journald (frozen or not) and reap it: what its socket held is dropped."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM journald (by the pid started) and reap it; SIGKILL after 10 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def entries(self, identifier: str) -> list[dict[str, Any]]:
        """Every entry with ``SYSLOG_IDENTIFIER=identifier``, in order, as journalctl says."""
        if not self.journal.exists():
            return []
        result = subprocess.run(
            ["journalctl", "-D", str(self.journal), "-o", "json", "--all", "--no-pager",
             f"SYSLOG_IDENTIFIER={identifier}"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for(self, identifier: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until ``count`` entries of ``identifier`` are in the journal; return them."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries(identifier)
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)


class DatagramPeer:
    """A Unix datagram socket at ``path`` that decodes every entry it receives.

    ``read=False`` binds it but reads nothing (a journald that is stuck) until :meth:`close`.
    """

    def __init__(self, path: Path, *, read: bool = True) -> None:
        self.path = str(path)
        self.entries: list[list[tuple[str, bytes]]] = []
        self.memfds = 0
        self.empty = 0
        self._arrived = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.05)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        if read:
            self._thread = threading.Thread(target=self._read, name="journal-peer", daemon=True)
            self._thread.start()

    def _read(self) -> None:
        fd_size = array.array("i").itemsize
        while not self._closing.is_set():
            try:
                data, ancdata, _, _ = self._sock.recvmsg(1 << 20, socket.CMSG_SPACE(fd_size))
            except TimeoutError:
                continue
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fd_size])
            for fd in fds:
                with os.fdopen(fd, "rb") as memfd:  # the sender's offset is at its end
                    memfd.seek(0)
                    data = memfd.read()
            with self._arrived:
                if fds:
                    self.memfds += 1
                if data:
                    self.entries.append(decode_entry(data))
                else:
                    self.empty += 1
                self._arrived.notify_all()

    def messages(self) -> list[str]:
        """The ``MESSAGE`` of each entry received, in order."""
        with self._arrived:
            return [dict(e)["MESSAGE"].decode("utf-8", "replace") for e in self.entries]

    def wait_for(self, predicate: Callable[[DatagramPeer], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (checked on every arrival); False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Stop reading and close the socket (senders then get ECONNREFUSED)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@contextlib.contextmanager
def datagram_peer(path: Path, **options: Any) -> Iterator[DatagramPeer]:
    """A :class:`DatagramPeer`, closed afterwards."""
    peer = DatagramPeer(path, **options)
    try:
        yield peer
    finally:
        peer.close()
