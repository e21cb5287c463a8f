"""Real servers for the tests, started on free loopback ports in temporary folders and
stopped afterwards (never mocked): Redis (`redis_server` in conftest.py) and PostgreSQL
(`postgres_server`, once per session); scripts/test.sh installs the Debian packages when
they are missing.

    url = postgres_server.new_database()   # a fresh, empty database: its postgresql:// URL
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class RedisServer:
    """A redis-server without persistence (`--save '' --appendonly no`) on a free loopback
    port. `freeze` (SIGSTOP) and `thaw` (SIGCONT) make it hang as a stalled server does;
    `kill` and `start` again bring it back on the same port, empty. `tls`: the port speaks TLS
    only, with a certificate for 127.0.0.1 from a test authority (trustme) whose certificate is
    `ca_file`; `url` is then `rediss://...?ssl_ca_certs=CA_FILE`."""

    def __init__(self, folder: Path | None = None, password: str | None = None, tls: bool = False):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="routelang-redis-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.socket = self.folder / "redis.sock"   # it listens there too (unix://)
        self.password = password
        self.proc: subprocess.Popen | None = None
        self.listen = ["--port", str(self.port)]
        if tls:
            import trustme

            authority = trustme.CA()
            certificate = authority.issue_cert("127.0.0.1")
            self.ca_file, cert_file, key_file = (self.folder / name for name in ("ca.pem", "cert.pem", "key.pem"))
            authority.cert_pem.write_to_path(str(self.ca_file))
            certificate.cert_chain_pems[0].write_to_path(str(cert_file))
            certificate.private_key_pem.write_to_path(str(key_file))
            self.listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert_file),
                           "--tls-key-file", str(key_file), "--tls-ca-cert-file", str(self.ca_file),
                           "--tls-auth-clients", "no"]
            self.url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"

    def start(self) -> RedisServer:
        auth = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *self.listen, "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--logfile", str(self.folder / "redis.log"), *auth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PostgresServer:
    """A PostgreSQL 15 cluster in a temporary folder, run as the `postgres` user
    (PostgreSQL refuses root); trust authentication on 127.0.0.1 only."""

    def __init__(self):
        if not (POSTGRES_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({POSTGRES_BIN}): apt-get install postgresql "
                               "(scripts/test.sh does it)")
        self.dir = Path(tempfile.mkdtemp(prefix="routelang-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                          "--no-sync")
        self.start()

    def _as_postgres(self, tool: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        # Durability is not what these tests are about: no fsync makes CREATE DATABASE and commits fast.
        options = (f"-p {self.port} -k {self.dir} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self.running = True

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database (from template0: a few ms): its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def make_read_only(self, url: str) -> None:
        """New sessions of the database at `url` can read it and write nothing (as on a hot
        standby): a write fails in the database, a read still works."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET default_transaction_read_only = on")

    def close(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def sqlite_write_locked(path: Path, monkeypatch: pytest.MonkeyPatch):
    """Another connection holds the registry file's write lock while the block runs, and
    the connections routelang opens meanwhile give up waiting for it after 0.2 s (not 10):
    reads still work (WAL), every write fails with "database is locked"."""
    import sqlite3

    from routelang.registry import sqlite

    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()


@contextlib.contextmanager
def writes_refused(location: Path | str, monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer | None = None):
    """While the block runs, the registry at `location` can be read but its database refuses every
    write: a file's write lock held (sqlite_write_locked); a Postgres database (on `postgres`) made
    read-only, for good, as on a hot standby."""
    if isinstance(location, Path):
        with sqlite_write_locked(location, monkeypatch):
            yield
    else:
        postgres.make_read_only(location)
        yield


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.close()


def closed_under_readers(read: Callable[[], object], close: Callable[[], None], readers: int = 4) -> list[str]:
    """`readers` threads calling `read` over and over while `close` is called: what each ended on
    ("closed": a RegistryError once the store was closed; a crash would end the interpreter)."""
    from routelang.registry import RegistryError

    outcomes: list[str] = []

    def reads() -> None:
        while True:
            try:
                read()
            except RegistryError:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=reads) for _ in range(readers)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)   # (the readers are reading)
    close()
    for thread in threads:
        thread.join(5)
    return outcomes
