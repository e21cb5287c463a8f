"""The request history: one row per routed request, never its text (unless
the gateway runs with `--capture`: then the body and the answer go to the
separate table `captures`, same id, same retention).

Rows are written off the request path: `HistoryWriter.record` puts a row on
a bounded queue (a full queue drops the row and counts it, so a slow disk or
a database that is down never slows routing) and one background thread
inserts them in batches through the registry's Store (store.py), then prunes
to the retention limits. A batch that fails to be written stays queued and
is tried again, on a new connection, until the database answers.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from pathlib import Path

from .backends import open_store
from .errors import StorageError
from .rows import CaptureRow, RequestRecord, Retention, Row
from .store import Store


class HistoryWriter:
    """Records requests from any thread; a daemon thread writes them in batches.

    `record` never blocks and never wakes the thread: it appends to a deque
    (beyond `queue_size` waiting rows it drops the row; `dropped` counts them),
    and the thread wakes every `interval_s` to write what has accumulated, in
    transactions of up to `batch_size` rows. (Waking it for each row, as a
    `queue.Queue` consumer would be, costs a thread switch and a transaction
    per request under load.) A batch the database refuses (down, locked past
    its timeout) goes back to the front of the queue and is tried again every
    `retry_s` on a new connection; meanwhile the queue's bound holds.
    `flush()` waits until every row recorded so far is written; `close()`
    flushes and stops the thread (rows it could not write count as dropped)."""

    def __init__(self, location: str | Path, retention: Retention | None = None, batch_size: int = 500,
                 interval_s: float = 0.2, queue_size: int = 10_000, prune_every_s: float = 60.0,
                 retry_s: float = 1.0):
        self.location = location
        self.retention = retention or Retention()
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.queue_size = queue_size
        self.prune_every_s = prune_every_s
        self.retry_s = retry_s
        self.dropped = 0
        self.written = 0
        self.failures = 0                   # batches the database refused (each tried again)
        self.last_error: str | None = None  # the last refusal, until a batch is written again
        self._pending: deque[RequestRecord | threading.Event] = deque()
        self._wake = threading.Event()      # flush/close: do not wait for the interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="routelang-history", daemon=True)
        self._thread.start()

    def record(self, record: RequestRecord | tuple) -> bool:
        """Queue a row: a RequestRecord, or a tuple `(encode, *args)` whose `encode(*args)` gives
        (Row, CaptureRow or None) in the writer thread (the gateway's: the request path only
        appends it). False when the queue is full and the row was dropped."""
        if len(self._pending) >= self.queue_size:
            self.dropped += 1
            return False
        self._pending.append(record)   # deque.append is atomic: no lock on the request path
        return True

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def flush(self, timeout_s: float = 10.0) -> None:
        if not self._mark().wait(timeout_s):
            raise TimeoutError(f"the request history was not written in time ({self.last_error or 'busy'})")

    def _mark(self) -> threading.Event:
        done = threading.Event()
        self._pending.append(done)  # a marker: set when everything before it is written
        self._wake.set()
        return done

    def close(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            self._mark().wait(timeout_s)   # if the database still refuses, what is left is counted as dropped
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout_s)
            self.dropped += sum(1 for item in self._pending if not isinstance(item, threading.Event))
            self._pending.clear()

    def _run(self) -> None:
        store: Store | None = None
        last_prune = 0.0
        refused: tuple[list[Row], list[CaptureRow], list[threading.Event]] | None = None  # to try again
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                while (refused is not None or self._pending) and not self._stop.is_set():
                    rows, captures, markers = refused if refused is not None else self._take()
                    try:
                        if store is None:
                            store = _open_for_writing(self.location)
                        if rows:
                            store.insert_rows(rows, captures)
                            self.written += len(rows)
                            self.last_error = None
                        now = time.monotonic()
                        if rows and now - last_prune >= self.prune_every_s:
                            store.prune(self.retention)
                            last_prune = now
                    except StorageError as exc:
                        refused = rows, captures, markers   # kept (beside the queue's bound) until written
                        self.failures += 1
                        self.last_error = str(exc)
                        if store is not None:
                            store.close()
                            store = None
                        self._stop.wait(self.retry_s)
                        break
                    refused = None
                    for marker in markers:
                        marker.set()
        finally:
            if store is not None:
                store.close()
            if refused is not None:
                self.dropped += len(refused[0])

    def _take(self) -> tuple[list[Row], list[CaptureRow], list[threading.Event]]:
        """Up to batch_size rows from the front, encoded, and the flush markers among them."""
        rows: list[Row] = []
        captures: list[CaptureRow] = []
        markers: list[threading.Event] = []
        pending = self._pending
        while pending and len(rows) < self.batch_size:
            item = pending.popleft()
            if isinstance(item, threading.Event):
                markers.append(item)
                continue
            if isinstance(item, tuple):
                row, capture = item[0](*item[1:])
            else:
                row, capture = item.row(), item.capture_row()
            rows.append(row)
            if capture is not None:
                captures.append(capture)
        return rows, captures, markers


def _open_for_writing(location: str | Path) -> Store:
    store = open_store(location)
    store.tune_for_history()
    return store


def _writer_key(location: str | Path) -> str:
    return location if isinstance(location, str) and "://" in location else str(Path(location).resolve())


_WRITERS: dict[str, HistoryWriter] = {}
_WRITERS_LOCK = threading.Lock()


def shared_writer(location: str | Path, retention: Retention | None = None) -> HistoryWriter:
    """The one writer of this process for the registry at `location` (every SDK
    Router of that registry, the gateway and its admin API use it, so a flush
    covers all of them); its rows are written at exit too. `retention`: the
    writer's (default: from the environment)."""
    key = _writer_key(location)
    with _WRITERS_LOCK:
        writer = _WRITERS.get(key)
        if writer is None or not writer._thread.is_alive():
            if not _WRITERS:
                atexit.register(_close_shared)
            writer = _WRITERS[key] = HistoryWriter(key, retention=retention or Retention.from_env())
        elif retention is not None:
            writer.retention = retention
    return writer


def _close_shared() -> None:
    with _WRITERS_LOCK:
        writers = list(_WRITERS.values())
        _WRITERS.clear()
    for writer in writers:
        writer.close()
