"""The registry's SQLite file: routers, their immutable versions, deployments.

One file per registry, opened by any number of processes on one host: WAL
lets readers run beside one writer, the busy timeout makes a second writer
wait instead of failing, and every write is one `BEGIN IMMEDIATE`
transaction, so two pushes never get the same version number.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000

# The schema, one step per version, applied in order; a step is never edited
# once released (add a new one). `schema_version` holds how many are applied.
# A step is split into statements at each `;`, so comments in it never hold one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE routers (
        name TEXT PRIMARY KEY,
        active_version INTEGER,
        created_at REAL NOT NULL
    );
    CREATE TABLE versions (
        router TEXT NOT NULL REFERENCES routers(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at REAL NOT NULL,
        entry TEXT NOT NULL,          -- the pushed file, a key of sources
        sources TEXT NOT NULL,        -- JSON {relative path: text}, imports included
        compiled TEXT NOT NULL,       -- the Mixtrain-schema JSON config
        PRIMARY KEY (router, version)
    );
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        router TEXT NOT NULL REFERENCES routers(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        deployed_at REAL NOT NULL,
        rolled_back INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        time REAL NOT NULL,
        router TEXT NOT NULL,
        version INTEGER,
        rule TEXT,
        targets TEXT NOT NULL,        -- JSON list of the selected targets
        attempts TEXT NOT NULL,       -- JSON list of {target, outcome, latency_ms}
        status TEXT NOT NULL,
        latency_ms REAL,
        ttft_ms REAL,
        tokens_in INTEGER,
        tokens_out INTEGER,
        cost REAL,
        split_label TEXT,
        sticky_key_hash TEXT,
        client_key_id TEXT
    );
    CREATE INDEX requests_by_router_time ON requests (router, time);
    CREATE INDEX requests_by_time ON requests (time);
    """,
    """
    ALTER TABLE requests ADD COLUMN http_status INTEGER;   -- the gateway's answer (SDK rows: NULL)
    ALTER TABLE requests ADD COLUMN error TEXT;            -- the gateway's error code, if any
    CREATE TABLE captures (           -- only with `serve --capture`: user text
        id TEXT PRIMARY KEY,          -- the request's id in requests
        request TEXT NOT NULL,        -- the body as the client sent it
        response TEXT                 -- the answer's body, or a stream's content concatenated
    );
    """,
    """
    ALTER TABLE requests ADD COLUMN source TEXT NOT NULL DEFAULT 'gateway';   -- gateway or sdk
    ALTER TABLE requests ADD COLUMN first_target TEXT;     -- gateway: the first target tried
    ALTER TABLE requests ADD COLUMN first_outcome TEXT;    -- its outcome, its own retries included
    ALTER TABLE requests ADD COLUMN failed_over INTEGER;   -- 1: another target was called after it
    UPDATE requests SET source = 'sdk' WHERE status = 'routed' OR (status = 'unmatched' AND http_status IS NULL)
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class RegistryError(Exception):
    """A registry operation that cannot be done (no such router or version, ...).

    `message` says what; `registry`, the file, is added by str() (for the CLI and the local
    SDK) but is not in `message`, which the admin API answers with: a path on the server is
    none of a remote client's business."""

    def __init__(self, message: str, registry: Path | None = None):
        super().__init__(message)
        self.message = message
        self.registry = registry

    def __str__(self) -> str:
        return self.message if self.registry is None else f"{self.message} in the registry {self.registry}"


# A router's name is also a path segment and the NAME of NAME@VERSION.
ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not ROUTER_NAME.fullmatch(name):
        raise RegistryError(f"{name!r} is not a router name: letters, digits, `.`, `_` and `-`, "
                            "starting with a letter or digit, at most 128 characters")
    return name


def default_path() -> Path:
    """`$ROUTELANG_REGISTRY`, else `$XDG_DATA_HOME/routelang/registry.db`
    (`~/.local/share/routelang/registry.db` when XDG_DATA_HOME is unset)."""
    explicit = os.environ.get("ROUTELANG_REGISTRY")
    if explicit:
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "routelang" / "registry.db"


@dataclass(frozen=True)
class Version:
    router: str
    version: int
    content_hash: str
    message: str
    created_at: float
    entry: str
    sources: dict[str, str]
    compiled: dict

    def summary(self) -> dict:
        return {"router": self.router, "version": self.version, "content_hash": self.content_hash,
                "message": self.message, "created_at": self.created_at}


def content_hash(sources: dict[str, str], compiled: dict) -> str:
    """Equal for the same files (by relative path) compiling to the same config."""
    canonical = json.dumps({"sources": sources, "compiled": compiled}, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, the
    busy timeout set, the schema migrated to SCHEMA_VERSION."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _journal_in_wal(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


def _journal_in_wal(conn: sqlite3.Connection) -> None:
    """SQLite answers "database is locked" at once, without the busy handler, to a switch to
    WAL while another process is switching the same new file; so retry within the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taking the write lock at the start (so a
    read-then-write cannot race another process's write)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else row[0]


def _checked_version(conn: sqlite3.Connection) -> int:
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise RegistryError(f"the registry's schema (version {current}) is newer than this routelang "
                            f"understands (version {SCHEMA_VERSION}): upgrade routelang")
    return current


def migrate(conn: sqlite3.Connection, upto: int = SCHEMA_VERSION) -> None:
    """Apply the steps of MIGRATIONS not applied yet, each in its own transaction."""
    if _checked_version(conn) >= upto:
        return
    with write(conn):
        current = _checked_version(conn)  # again, under the lock: another process may have migrated
        for step in MIGRATIONS[current:upto]:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (max(current, upto),))


class Store:
    """Routers, versions and deployments in one registry file."""

    def __init__(self, path: str | Path | None = None, create: bool = True):
        """`create=False`: a missing file is a RegistryError (reading never creates one)."""
        self.path = Path(path) if path is not None else default_path()
        if not create and not self.path.exists():
            raise RegistryError(f"no registry at {self.path} (`routelang push` creates it)")
        self.conn = connect(self.path)

    def close(self) -> None:
        self.conn.close()

    # ---- routers ------------------------------------------------------------------

    def routers(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT r.name, r.active_version, (SELECT MAX(version) FROM versions v WHERE v.router = r.name) "
            "AS latest FROM routers r ORDER BY r.name").fetchall()
        return [dict(row) for row in rows]

    def active_version(self, router: str) -> int | None:
        row = self.conn.execute("SELECT active_version FROM routers WHERE name = ?", (router,)).fetchone()
        if row is None:
            raise RegistryError(f"no router called {router!r}", self.path)
        return row[0]

    def delete(self, router: str) -> None:
        """The router, its versions, deployments and request history."""
        with write(self.conn):
            if self.conn.execute("DELETE FROM routers WHERE name = ?", (router,)).rowcount == 0:
                raise RegistryError(f"no router called {router!r}", self.path)
            self.conn.execute("DELETE FROM captures WHERE id IN (SELECT id FROM requests WHERE router = ?)",
                              (router,))
            self.conn.execute("DELETE FROM requests WHERE router = ?", (router,))

    # ---- versions -----------------------------------------------------------------

    def push(self, router: str, entry: str, sources: dict[str, str], compiled: dict,
             message: str = "", from_config: bool = False) -> tuple[Version, bool]:
        """Store a new version unless one with the same content exists:
        (the version, whether it is new). `from_config`: the source is text imported
        from a config (`update()`, a config push), so it is the compiled config that
        says what was given: a version compiled to the same config is the same (an
        `update()` that changes nothing after a pushed file makes no version)."""
        check_name(router)
        digest = content_hash(sources, compiled)
        with write(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO routers (name, created_at) VALUES (?, ?)",
                              (router, time.time()))
            row = self.conn.execute("SELECT version FROM versions WHERE router = ? AND content_hash = ?",
                                    (router, digest)).fetchone()
            if row is None and from_config:
                row = next((r for r in self.conn.execute("SELECT version, compiled FROM versions WHERE router = ? "
                                                         "ORDER BY version", (router,))
                            if json.loads(r["compiled"]) == compiled), None)
            if row is not None:
                existing = row[0]
            else:
                number = self.conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE router = ?",
                                           (router,)).fetchone()[0]
                self.conn.execute(
                    "INSERT INTO versions (router, version, content_hash, message, created_at, entry, sources, "
                    "compiled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (router, number, digest, message, time.time(), entry, json.dumps(sources, ensure_ascii=False),
                     json.dumps(compiled, ensure_ascii=False)))
        if row is not None:
            return self.version(router, existing), False
        return self.version(router, number), True

    def versions(self, router: str) -> list[dict]:
        self.active_version(router)  # raises for an unknown router
        rows = self.conn.execute("SELECT router, version, content_hash, message, created_at FROM versions "
                                 "WHERE router = ? ORDER BY version", (router,)).fetchall()
        return [dict(row) for row in rows]

    def version(self, router: str, version: int | None = None) -> Version:
        """A stored version; None: the active one, else the latest."""
        if version is None:
            version = self.active_version(router)
        if version is None:
            row = self.conn.execute("SELECT * FROM versions WHERE router = ? ORDER BY version DESC LIMIT 1",
                                    (router,)).fetchone()
        else:
            row = self.conn.execute("SELECT * FROM versions WHERE router = ? AND version = ?",
                                    (router, version)).fetchone()
        if row is None:
            self.active_version(router)
            raise RegistryError(f"router {router!r} has no version {version}")
        return Version(row["router"], row["version"], row["content_hash"], row["message"], row["created_at"],
                       row["entry"], json.loads(row["sources"]), json.loads(row["compiled"]))

    # ---- deployments --------------------------------------------------------------

    def deploy(self, router: str, version: int) -> None:
        with write(self.conn):
            if self.conn.execute("SELECT 1 FROM versions WHERE router = ? AND version = ?",
                                 (router, version)).fetchone() is None:
                self.version(router, version)  # raises the right error
            self.conn.execute("INSERT INTO deployments (router, version, deployed_at) VALUES (?, ?, ?)",
                              (router, version, time.time()))
            self.conn.execute("UPDATE routers SET active_version = ? WHERE name = ?", (version, router))

    def rollback(self, router: str) -> tuple[int, int]:
        """Make the version deployed before the current deployment active again:
        (from version, to version). Rolling back again goes further back."""
        with write(self.conn):
            live = self.conn.execute("SELECT id, version FROM deployments WHERE router = ? AND rolled_back = 0 "
                                     "ORDER BY id DESC LIMIT 2", (router,)).fetchall()
            if len(live) < 2:
                self.active_version(router)
                raise RegistryError(f"router {router!r} has no earlier deployment to roll back to")
            (current_id, current), (_, previous) = live
            self.conn.execute("UPDATE deployments SET rolled_back = 1 WHERE id = ?", (current_id,))
            self.conn.execute("UPDATE routers SET active_version = ? WHERE name = ?", (previous, router))
        return current, previous

    def deployments(self, router: str) -> list[dict]:
        rows = self.conn.execute("SELECT version, deployed_at, rolled_back FROM deployments WHERE router = ? "
                                 "ORDER BY id", (router,)).fetchall()
        return [dict(row) for row in rows]
