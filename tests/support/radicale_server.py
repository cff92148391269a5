"""A real Radicale CalDAV server in a subprocess, for integration tests.

The port and the storage folder are chosen once, so ``stop()`` then ``start()``
brings back the same server with the same calendars (fault tests rely on it).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from caldav.davclient import DAVClient

READY_TIMEOUT_S = 10.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RadicaleServer:
    """``python -m radicale`` on 127.0.0.1 with filesystem storage under ``tmp_dir``.

    With ``users`` the server checks passwords (htpasswd, plain) and each user
    reaches only their own calendars; without, anyone reaches everything.
    """

    def __init__(self, tmp_dir: Path, users: dict[str, str] | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.users = dict(users) if users is not None else None
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._config = self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        storage = self.tmp_dir / "collections"
        if self.users is None:
            # Any login, and no login at all, may read and write everything.
            auth, rights = "type = none", "authenticated"
        else:
            htpasswd = self.tmp_dir / "users"
            htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            auth = (
                "type = htpasswd\n"
                f"htpasswd_filename = {htpasswd}\n"
                "htpasswd_encryption = plain\n"
                # The default 1 s penalty on a wrong password would slow the tests down.
                "delay = 0"
            )
            rights = "owner_only"
        config = self.tmp_dir / "radicale.conf"
        config.write_text(
            f"[server]\nhosts = 127.0.0.1:{self.port}\n\n"
            f"[auth]\n{auth}\n\n"
            f"[rights]\ntype = {rights}\n\n"
            f"[storage]\nfilesystem_folder = {storage}\n\n"
            "[web]\ntype = none\n\n"
            "[logging]\nlevel = warning\n"
        )
        return config

    def start(self) -> None:
        """Start the server and wait until it answers HTTP."""
        if self.is_running:
            return
        with (self.tmp_dir / "radicale.log").open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "-C", str(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = (self.tmp_dir / "radicale.log").read_text(errors="replace")
                raise RuntimeError(f"radicale exited with {self._process.returncode}:\n{output}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"radicale did not answer on {self.url} within {READY_TIMEOUT_S} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(12).startswith(b"HTTP/")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server; the storage and the port stay for the next ``start()``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def make_calendar(self, user: str, name: str) -> str:
        """Create calendar ``name`` for ``user`` and return its collection URL."""
        password = (self.users or {}).get(user, "any")
        with DAVClient(
            url=f"{self.url}/{user}/",
            username=user,
            password=password,
            # Send the login up front: without users the server never asks for it.
            auth_type="basic",
            timeout=5,
            enable_rfc6764=False,
        ) as client:
            calendar = client.principal().make_calendar(name=name, cal_id=name)
            return str(calendar.url)

    def __enter__(self) -> RadicaleServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
