"""The registry in one SQLite file (a path as `--registry`).

Opened by any number of processes on one host: WAL lets readers run beside
one writer, the busy timeout makes a second writer wait instead of failing,
and every write is one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RegistryError, StorageError
from .store import Store, default_location

if TYPE_CHECKING:
    from .rows import CaptureRow, Retention, Row

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
    # The history's cheaper table: rows in the order they were written (rowid), one index. The random
    # `id` key and the `time` index cost a row ~11 us of the writer's CPU at 200k rows (18.7 -> 7.7 us);
    # `request ID` now reads the table through, and retention goes by rowid.
    """
    CREATE TABLE requests_by_rowid (
        id TEXT NOT NULL,
        time REAL NOT NULL,
        router TEXT NOT NULL,
        version INTEGER,
        rule TEXT,
        targets TEXT NOT NULL,
        attempts TEXT NOT NULL,
        status TEXT NOT NULL,
        latency_ms REAL,
        ttft_ms REAL,
        tokens_in INTEGER,
        tokens_out INTEGER,
        cost REAL,
        split_label TEXT,
        sticky_key_hash TEXT,
        client_key_id TEXT,
        http_status INTEGER,
        error TEXT,
        source TEXT NOT NULL DEFAULT 'gateway',
        first_target TEXT,
        first_outcome TEXT,
        failed_over INTEGER
    );
    INSERT INTO requests_by_rowid SELECT id, time, router, version, rule, targets, attempts, status, latency_ms,
        ttft_ms, tokens_in, tokens_out, cost, split_label, sticky_key_hash, client_key_id, http_status, error,
        source, first_target, first_outcome, failed_over FROM requests ORDER BY time, rowid;
    DROP TABLE requests;
    ALTER TABLE requests_by_rowid RENAME TO requests;
    CREATE INDEX requests_by_router_time ON requests (router, time)
    """,
    # Tenant keys (routelang/tenancy/keys.py): only a key's sha256 is kept.
    """
    CREATE TABLE tenant_keys (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        workspace TEXT NOT NULL,
        agent TEXT,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL
    )
    """,
    # A key's own budgets and limits (routelang/tenancy/keys.py): JSON lists, NULL for none.
    """
    ALTER TABLE tenant_keys ADD COLUMN budgets TEXT;
    ALTER TABLE tenant_keys ADD COLUMN limits TEXT
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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


def _storage_error(location, exc: Exception) -> StorageError:
    return StorageError(str(exc), str(location))


class SqliteStore(Store):
    """A registry file."""

    insertion_order = "rowid"

    def __init__(self, location: str | Path | None = None, create: bool = True):
        self.path = Path(location) if location is not None else Path(default_location())
        self.location = str(self.path)
        if not create and not self.path.exists():
            raise RegistryError(f"no registry at {self.path} (`routelang push` creates it)")
        # One connection, used by the gateway's worker threads (reloads, the admin API) and its event
        # loop: every use holds the lock, a write transaction from BEGIN to COMMIT, so no thread's
        # statements land inside another's transaction and closing never frees a statement in use.
        self.lock = threading.RLock()
        try:
            self.conn = connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise _storage_error(self.path, exc) from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        try:
            with self.lock:
                return [dict(row) for row in self.conn.execute(sql, args).fetchall()]
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from None

    def execute(self, sql: str, args: tuple | list = ()) -> int:
        try:
            with self.lock:
                return self.conn.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from None

    @contextmanager
    def write(self) -> Iterator[None]:
        try:
            with self.lock, write(self.conn):
                yield
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from None

    def insert_rows(self, rows: list[Row], captures: list[CaptureRow]) -> None:
        """(No unique id: a repeated id is a second row, its capture the first's.)"""
        from .rows import COLUMNS

        with self.write():
            self.conn.executemany(f"INSERT INTO requests ({', '.join(COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            if captures:
                self.conn.executemany("INSERT OR IGNORE INTO captures (id, request, response) VALUES (?, ?, ?)",
                                      [(c[0], c[2], c[3]) for c in captures])

    def prune(self, retention: Retention, now: float | None = None) -> int:
        """Delete the rows written before the first one newer than max_days, then the oldest
        written beyond max_rows (rows are written in time order, within a batch's interval):
        both walk the table from one end, no index needed."""
        now = time.time() if now is None else now
        with self.write():
            gone = self.execute(
                "DELETE FROM requests WHERE rowid < COALESCE((SELECT rowid FROM requests WHERE time >= ? "
                "ORDER BY rowid LIMIT 1), (SELECT MAX(rowid) + 1 FROM requests))",
                (now - retention.max_days * 86400,))
            gone += self.execute("DELETE FROM requests WHERE rowid <= (SELECT rowid FROM requests "
                                 "ORDER BY rowid DESC LIMIT 1 OFFSET ?)", (retention.max_rows,))
            if gone:
                self.execute("DELETE FROM captures WHERE id NOT IN (SELECT id FROM requests)")
        return gone

    def tune_for_history(self) -> None:
        """The history writer's connection: it may lose its last rows on a power cut (never its
        consistency); no fsync per batch."""
        with self.lock:
            self.conn.execute("PRAGMA synchronous = NORMAL")
