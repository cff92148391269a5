"""``boxoffice serve`` as a subprocess, and HTTP clients for it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from harness import log
from harness.cpu import descendants

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on HOST that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """``boxoffice serve`` in its own process group, so it can be stopped as a whole.

    ``extra_args`` go after ``--port P --workers N``; ``extra_env`` is added to the
    environment (``BOXOFFICE_DATABASE_URL`` and a temporary ``BOXOFFICE_DATA_DIR``).
    ``name`` is what the progress lines call it.
    """

    name = "server"
    ready_path = "/healthz"  # up once this answers 200

    def __init__(
        self,
        db_url: str,
        *,
        port: int,
        workers: int,
        workdir: Path,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = workdir / "server.log"
        exe = shutil.which("boxoffice")
        base = [exe] if exe else [sys.executable, "-m", "boxoffice.cli"]
        self.command = [*base, "serve", "--port", str(self.port), "--workers", str(workers)]
        self.command += extra_args
        self.env = {
            **os.environ,
            "BOXOFFICE_DATABASE_URL": db_url,
            "BOXOFFICE_DATA_DIR": str(workdir / "data"),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and wait until ``ready_path`` answers 200 (``serve`` migrates
        first)."""
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with suppress(OSError, http.client.HTTPException):
                if self._answers():
                    log(f"{self.name} up on {HOST}:{self.port} (pid {self.proc.pid})")
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            conn.request("GET", self.ready_path)
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        """The server process and all its descendants (CPU accounting)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def http_workers(self) -> list[int]:
        """The processes serving HTTP: uvicorn's spawned workers, or the server itself."""
        if self.proc is None:
            return []
        spawned = []
        for pid in descendants(self.proc.pid):
            with suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    spawned.append(pid)
        return spawned or [self.proc.pid]

    def stop(self) -> None:
        """SIGTERM to the whole process group; SIGKILL if it is not gone after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        log(f"{self.name} stopped")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output ("" if there is none)."""
        with suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Start ``server``; on an error print the last lines of its log; always stop it."""
    try:
        server.start()
        yield server
    except Exception:
        tail = server.log_tail()
        if tail:
            print(f"--- {server.name} log (last lines) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        server.stop()


def http_call(
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """One request on a new connection; returns the status and the decoded JSON body."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, payload, hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


class Client:
    """One simulated client: an optional bearer token and one persistent keep-alive
    connection to HOST."""

    def __init__(self, port: int, token: str | None, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn: http.client.HTTPConnection | None = None
        self.local_port = 0

    def connect(self) -> None:
        """(Re)open the connection, with TCP_NODELAY."""
        self.close()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
        conn.connect()
        # http.client sends headers and body in two writes: without this, Nagle's
        # algorithm and delayed ACKs can add ~40 ms to a request.
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = int(conn.sock.getsockname()[1])
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None) -> tuple[str, float, int]:
        """Status (or the exception's name), seconds taken, response bytes.

        A failed request is reported, not retried (a booking is not idempotent); the
        connection is reopened for the next one.
        """
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.connect()
            assert self.conn is not None
            self.conn.request(method, path, body, self.headers)
            resp = self.conn.getresponse()
            size = len(resp.read())
            return str(resp.status), time.perf_counter() - started, size
        except (OSError, http.client.HTTPException) as exc:
            elapsed = time.perf_counter() - started
            self.close()
            return type(exc).__name__, elapsed, 0
