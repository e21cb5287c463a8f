"""The registry in a PostgreSQL database (`--registry postgresql://USER@HOST:PORT/DB`).

What several gateway replicas on several machines share: every write is a
transaction holding one advisory lock (pushes and deploys are rare; this
gives the same guarantee as SQLite's `BEGIN IMMEDIATE`: no version number
given twice), and a change of what is deployed is announced with NOTIFY at
commit, so every replica listening reloads at once.

The request history is partitioned by UTC day on `time`: the writer COPYs a
batch into the day's partition (created when first needed), and retention
drops whole days instead of deleting rows. Indexes: (router, time) for
`requests` and `ab`, id for `request ID`.

psycopg (3) is imported only here, when a postgresql:// URL asks for it.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import dict_row

from .errors import RegistryError, StorageError
from .store import Store, default_location

if TYPE_CHECKING:
    from .rows import CaptureRow, Retention, Row

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000
WRITE_LOCK = 0x726F7574656C616E     # pg_advisory_xact_lock's key for registry writes ("routelan")
CHANNEL = "routelang_deployed"      # NOTIFY'd when what is deployed changes
DAY_S = 86_400

# One step per schema version, applied in order in one transaction each; a step is never
# edited once released (add a new one). `schema_version` holds how many are applied.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE routers (
        name text PRIMARY KEY,
        active_version integer,
        created_at double precision NOT NULL
    );
    CREATE TABLE versions (
        router text NOT NULL REFERENCES routers(name) ON DELETE CASCADE,
        version integer NOT NULL,
        content_hash text NOT NULL,
        message text NOT NULL,
        created_at double precision NOT NULL,
        entry text NOT NULL,
        sources text NOT NULL,
        compiled text NOT NULL,
        PRIMARY KEY (router, version)
    );
    CREATE TABLE deployments (
        id bigserial PRIMARY KEY,
        router text NOT NULL REFERENCES routers(name) ON DELETE CASCADE,
        version integer NOT NULL,
        deployed_at double precision NOT NULL,
        rolled_back integer NOT NULL DEFAULT 0
    );
    CREATE TABLE requests (
        seq bigserial,
        id text NOT NULL,
        time double precision NOT NULL,
        router text NOT NULL,
        version integer,
        rule text,
        targets text NOT NULL,
        attempts text NOT NULL,
        status text NOT NULL,
        latency_ms double precision,
        ttft_ms double precision,
        tokens_in integer,
        tokens_out integer,
        cost double precision,
        split_label text,
        sticky_key_hash text,
        client_key_id text,
        http_status integer,
        error text,
        source text NOT NULL DEFAULT 'gateway',
        first_target text,
        first_outcome text,
        failed_over boolean
    ) PARTITION BY RANGE (time);
    CREATE INDEX requests_by_router_time ON requests (router, time);
    CREATE INDEX requests_by_id ON requests (id);
    CREATE TABLE captures (
        id text NOT NULL,
        time double precision NOT NULL,
        request text NOT NULL,
        response text
    ) PARTITION BY RANGE (time);
    CREATE INDEX captures_by_id ON captures (id);
    """,
    # Tenant keys (routelang/tenancy/keys.py): only a key's sha256 is kept.
    """
    CREATE TABLE tenant_keys (
        id text PRIMARY KEY,
        digest text NOT NULL UNIQUE,
        workspace text NOT NULL,
        agent text,
        created_at double precision NOT NULL,
        expires_at double precision,
        revoked_at double precision
    );
    """,
    # A key's own budgets and limits (routelang/tenancy/keys.py): JSON lists, NULL for none.
    """
    ALTER TABLE tenant_keys ADD COLUMN budgets text;
    ALTER TABLE tenant_keys ADD COLUMN limits text
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
PARTITIONED = ("requests", "captures")


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S,
                           options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")


def _sql(text: str) -> str:
    return text.replace("?", "%s")


def day_of(timestamp: float) -> int:
    """The UTC day (seconds since the epoch at its midnight) of a time."""
    return int(timestamp // DAY_S) * DAY_S


def partition_name(table: str, day: int) -> str:
    return f"{table}_{datetime.datetime.fromtimestamp(day, datetime.UTC):%Y%m%d}"


def _day_of_partition(name: str) -> int:
    stamp = datetime.datetime.strptime(name.rsplit("_", 1)[1], "%Y%m%d").replace(tzinfo=datetime.UTC)
    return int(stamp.timestamp())


class PostgresStore(Store):
    """A registry database; the connection is opened again after it breaks."""

    insertion_order = "seq"
    notifies = True

    def __init__(self, location: str | None = None, create: bool = True):
        self.location = str(location or default_location())
        self._conn: psycopg.Connection | None = None
        # One statement or transaction at a time on the connection: a write transaction holds the
        # lock from BEGIN to COMMIT, so another thread's statements never land inside it.
        self._lock = threading.RLock()
        self._days: set[int] = set()       # days whose partitions exist (this store made sure)
        self._closed = False
        conn = self._connection()
        try:
            found = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS found").fetchone()["found"]
            if not found and not create:
                raise RegistryError(f"no registry at {self.shown} (`routelang push` creates it)")
            self._migrate(conn)
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> StorageError:
        return StorageError(str(exc).strip() or type(exc).__name__, self.shown)

    def _connection(self) -> psycopg.Connection:
        if self._closed:
            raise StorageError("the store is closed", self.shown)
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = _connect(self.location)
            except psycopg.Error as exc:
                raise self._failed(exc) from None
        return self._conn

    def _migrate(self, conn: psycopg.Connection) -> None:
        def current() -> int:
            if not conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS found").fetchone()["found"]:
                return 0
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            return 0 if row is None else row["version"]

        def checked(version: int) -> int:
            if version > SCHEMA_VERSION:
                raise RegistryError(f"the registry's schema (version {version}) is newer than this routelang "
                                    f"understands (version {SCHEMA_VERSION}): upgrade routelang")
            return version

        if checked(current()) == SCHEMA_VERSION:
            return
        # The lock is taken before the transaction begins, so that the transaction sees the tables
        # another process created while this one waited (the catalog is read once per transaction).
        conn.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        try:
            with conn.transaction():
                applied = checked(current())     # again, under the lock: another process may have migrated
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                for step in MIGRATIONS[applied:]:
                    conn.execute(step)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))

    def close(self) -> None:
        with self._lock:
            self._closed = True   # (a lost connection is opened again; a closed store is not)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- the port's primitives -------------------------------------------------------------

    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        try:
            with self._lock:
                return self._connection().execute(_sql(sql), args).fetchall()
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    def execute(self, sql: str, args: tuple | list = ()) -> int:
        try:
            with self._lock:
                return self._connection().execute(_sql(sql), args).rowcount
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    @contextmanager
    def write(self) -> Iterator[None]:
        try:
            with self._lock:
                conn = self._connection()
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    yield
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    def _deployed_changed(self) -> None:
        self.execute(f"NOTIFY {CHANNEL}")   # delivered when the transaction commits

    # ---- the history ---------------------------------------------------------------------

    def insert_rows(self, rows: list[Row], captures: list[CaptureRow]) -> None:
        """One COPY per table, into the partitions of the rows' days (made first when missing).
        (No unique id across partitions: a repeated id is a second row.)"""
        from .rows import COLUMNS

        try:
            with self._lock:
                conn = self._connection()
                self._make_partitions(conn, {day_of(row[1]) for row in rows})   # row[1]: time
                with conn.transaction(), conn.cursor() as cursor:
                    with cursor.copy(f"COPY requests ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    if captures:
                        with cursor.copy("COPY captures (id, time, request, response) FROM STDIN") as copy:
                            for capture in captures:
                                copy.write_row(capture)
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    def _make_partitions(self, conn: psycopg.Connection, days: set[int]) -> None:
        missing = days - self._days
        if not missing:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))   # replicas creating the same day
            for day in sorted(missing):
                for table in PARTITIONED:
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
                                 f"FOR VALUES FROM ({day}) TO ({day + DAY_S})")
        self._days |= missing

    def partitions(self, table: str = "requests") -> list[tuple[int, str]]:
        """(day, partition) of `table`, oldest first."""
        rows = self.query("SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                          "WHERE i.inhparent = ?::regclass", (table,))
        return sorted((_day_of_partition(r["name"]), r["name"]) for r in rows)

    def prune(self, retention: Retention, now: float | None = None) -> int:
        """Drop whole days: every day whose end is older than max_days, then the oldest days
        while the newer ones hold at least max_rows rows (so at least max_rows rows are kept,
        and a day's rows go together). The number of rows dropped."""
        now = time.time() if now is None else now
        cutoff = now - retention.max_days * DAY_S

        def count(name: str) -> int:   # (only the days kept until max_rows, and those dropped, are counted)
            return self.query(f"SELECT COUNT(*) AS n FROM {name}")[0]["n"]

        doomed, kept, gone = [], 0, 0
        for day, name in reversed(self.partitions()):       # the newest first
            if day + DAY_S <= cutoff or kept >= retention.max_rows:
                doomed.append(day)
                gone += count(name)
            else:
                kept += count(name)
        with self.write():
            for day in doomed:
                for table in PARTITIONED:
                    self.execute(f"DROP TABLE IF EXISTS {partition_name(table, day)}")
        self._days -= set(doomed)
        return gone

    # ---- notifications --------------------------------------------------------------------

    def watch(self, changed: Callable[[], None], stop: threading.Event, retry_s: float = 1.0) -> None:
        """Call `changed()` whenever any process changes what is deployed, until `stop` is set
        (blocking: run it in a thread). On its own connection; after the connection is lost it
        connects again and calls `changed()` once (a change may have been missed meanwhile)."""
        while not stop.is_set():
            try:
                with _connect(self.location) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    changed()
                    while not stop.is_set():
                        if any(True for _ in conn.notifies(timeout=0.5)):
                            changed()
            except psycopg.Error:
                stop.wait(retry_s)   # the database is down: the gateway's poll reports it, and this tries again
