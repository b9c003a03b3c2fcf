"""Throwaway Redis and PostgreSQL servers for the tests that stop and restart their services.

The fault tests restart Redis and PostgreSQL on purpose. They do it to servers of their own, started
here on free ports in a temporary folder and killed afterwards, never to the machine's: a staging
server's queued work and databases stay as they were.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(tool: str | None, what: str) -> str:
    """The tool's path; without it, skip locally and fail in CI."""
    if tool is None or not Path(tool).exists():
        (pytest.fail if IN_CI else pytest.skip)(f"{what} is not installed here")
    assert tool is not None
    return tool


def _wait(check: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class ThrowawayRedis:
    """A `redis-server` on a free port, no persistence; `restart` loses every key, as a crash would."""

    def __init__(self) -> None:
        self.binary = require(shutil.which("redis-server"), "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._pings, timeout=30, what="the throwaway Redis to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _pings(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def _postgres_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


class ThrowawayPostgres:
    """A PostgreSQL cluster made by `initdb` in a temporary folder, run by `pg_ctl` on a free port.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user.
    """

    def __init__(self, folder: Path) -> None:
        self.initdb = require(_postgres_bin("initdb"), "PostgreSQL's initdb")
        self.pg_ctl = require(_postgres_bin("pg_ctl"), "PostgreSQL's pg_ctl")
        self.folder = folder
        self.data = folder / "data"
        self.log = str(folder / "log")
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        subprocess.run(list(args), check=True, capture_output=True, timeout=120, user=self.user)

    def start(self) -> None:
        if not self.data.exists():
            if self.user:
                shutil.chown(self.folder, user=self.user)
            self._run(
                self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"
            )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )

    def restart(self) -> None:
        """A fast shutdown and a start: every connection is cut, as when a server is restarted."""
        # -l again: without it the new server would write to (and hold open) pg_ctl's own output.
        self._run(self.pg_ctl, "-D", str(self.data), "-l", self.log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextmanager
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    # Its own folder under /tmp: pytest's temporary folders are private to root, and the server may
    # run as `postgres`; a short path also keeps the Unix socket's name under its length limit.
    folder = Path(tempfile.mkdtemp(prefix="skinscreen-pg-"))
    server = ThrowawayPostgres(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
