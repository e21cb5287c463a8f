"""The request history: one row per routed request, never its text.

Rows are written off the request path: `HistoryWriter.record` puts a row on
a bounded queue (a full queue drops the row and counts it, so a slow disk
never slows routing) and one background thread inserts them in batches,
then prunes to the retention limits.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .store import connect, write

COLUMNS = ("id", "time", "router", "version", "rule", "targets", "attempts", "status", "latency_ms", "ttft_ms",
           "tokens_in", "tokens_out", "cost", "split_label", "sticky_key_hash", "client_key_id")
JSON_COLUMNS = ("targets", "attempts")


def _new_id() -> str:
    return os.urandom(16).hex()


@dataclass(slots=True)
class RequestRecord:
    router: str
    version: int | None
    rule: str | None
    status: str                                       # "routed", "unmatched", "ok", "error", ...
    targets: list = field(default_factory=list)  # {model_name, provider, label, weight}, or runtime Targets
    attempts: list[dict] = field(default_factory=list)
    latency_ms: float | None = None
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None
    split_label: str | None = None
    sticky_key_hash: str | None = None
    client_key_id: str | None = None
    id: str = field(default_factory=_new_id)
    time: float = field(default_factory=time.time)

    def row(self) -> tuple:
        """The values of COLUMNS, in order (built in the writer thread, not on the request path)."""
        return (self.id, self.time, self.router, self.version, self.rule, _json([_target(t) for t in self.targets]),
                _json(self.attempts), self.status, self.latency_ms, self.ttft_ms, self.tokens_in, self.tokens_out,
                self.cost, self.split_label, self.sticky_key_hash, self.client_key_id)


_json = json.JSONEncoder(ensure_ascii=False).encode


def _target(target) -> dict:
    if isinstance(target, dict):
        return target
    return {"model_name": target.model_name, "provider": target.provider, "label": target.label,
            "weight": target.weight}


def sticky_hash(value) -> str:
    """What the history keeps of a sticky key: a hash, never the key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Retention:
    max_rows: int = 1_000_000
    max_days: float = 30.0


def prune(conn: sqlite3.Connection, retention: Retention, now: float | None = None) -> int:
    """Delete rows older than max_days, then the oldest beyond max_rows; the number deleted."""
    now = time.time() if now is None else now
    with write(conn):
        gone = conn.execute("DELETE FROM requests WHERE time < ?", (now - retention.max_days * 86400,)).rowcount
        gone += conn.execute("DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                             "ORDER BY time DESC LIMIT -1 OFFSET ?)", (retention.max_rows,)).rowcount
    return gone


def insert(conn: sqlite3.Connection, records: list[RequestRecord]) -> None:
    with write(conn):
        conn.executemany(f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(COLUMNS))})", [r.row() for r in records])


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for name in JSON_COLUMNS:
        out[name] = json.loads(out[name])
    # The names the Mixtrain SDK's examples read.
    out["matched_rule"] = out["rule"]
    out["selected_target"] = out["targets"][0]["model_name"] if out["targets"] else None
    return out


MAX_LIMIT = 10_000   # rows one listing may ask for (the SDK's and the admin API's `limit`)


def list_requests(conn: sqlite3.Connection, router: str, limit: int = 100) -> list[dict]:
    """The newest first."""
    rows = conn.execute("SELECT * FROM requests WHERE router = ? ORDER BY time DESC, rowid DESC LIMIT ?",
                        (router, limit)).fetchall()
    return [_decode(r) for r in rows]


def get_request(conn: sqlite3.Connection, request_id: str) -> dict | None:
    row = conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
    return None if row is None else _decode(row)


class HistoryWriter:
    """Records requests from any thread; a daemon thread writes them in batches.

    `record` never blocks: beyond `queue_size` waiting rows it drops the row
    (`dropped` counts them). `flush()` waits until every row recorded so far
    is written; `close()` flushes and stops the thread."""

    def __init__(self, path: str | Path, retention: Retention = Retention(), batch_size: int = 500,
                 interval_s: float = 0.2, queue_size: int = 10_000, prune_every_s: float = 60.0):
        self.path = Path(path)
        self.retention = retention
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.prune_every_s = prune_every_s
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="routelang-history", daemon=True)
        self._thread.start()

    def record(self, record: RequestRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 10.0) -> None:
        done = threading.Event()
        self._queue.put(done, timeout=timeout_s)  # a marker: set when everything before it is written
        if not done.wait(timeout_s):
            raise TimeoutError("the request history was not written in time")

    def close(self) -> None:
        if self._thread.is_alive():
            self.flush()
            self._stop.set()
            self._thread.join(10)

    def _run(self) -> None:
        conn = connect(self.path)
        last_prune = 0.0
        try:
            while not self._stop.is_set():
                batch, markers = self._take()
                if batch:
                    insert(conn, batch)
                    self.written += len(batch)
                now = time.monotonic()
                if batch and now - last_prune >= self.prune_every_s:
                    prune(conn, self.retention)
                    last_prune = now
                for marker in markers:
                    marker.set()
        finally:
            conn.close()

    def _take(self) -> tuple[list[RequestRecord], list[threading.Event]]:
        batch: list[RequestRecord] = []
        markers: list[threading.Event] = []
        try:
            item = self._queue.get(timeout=self.interval_s)
        except queue.Empty:
            return batch, markers
        while True:
            if isinstance(item, threading.Event):
                markers.append(item)
                break  # write what came before it now
            batch.append(item)
            if len(batch) >= self.batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, markers


_WRITERS: dict[Path, HistoryWriter] = {}
_WRITERS_LOCK = threading.Lock()


def shared_writer(path: str | Path) -> HistoryWriter:
    """The one writer of this process for the registry at `path` (every SDK
    Router of that registry uses it); its rows are written at exit too."""
    key = Path(path).resolve()
    with _WRITERS_LOCK:
        writer = _WRITERS.get(key)
        if writer is None or not writer._thread.is_alive():
            if not _WRITERS:
                atexit.register(_close_shared)
            writer = _WRITERS[key] = HistoryWriter(key)
    return writer


def _close_shared() -> None:
    with _WRITERS_LOCK:
        writers = list(_WRITERS.values())
        _WRITERS.clear()
    for writer in writers:
        writer.close()
