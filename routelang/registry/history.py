"""The request history: one row per routed request, never its text (unless
the gateway runs with `--capture`: then the body and the answer go to the
separate table `captures`, same id, same retention).

Rows are written off the request path and out of the recording process:
`HistoryWriter.record` puts a row (a tuple of plain values, built by the
caller) on a bounded queue (a full queue drops the row and counts it, so a
slow disk or a database that is down never slows routing); a background
thread hands them, a batch at a time, to a writer process
(history_process.py) that narrows, encodes and inserts them through the
registry's Store, then prunes to the retention limits. Encoding and inserting
in a thread of the serving process cost it a fifth of its CPU per request,
the thread holding the GIL the event loop waits for; building the rows there
from the requests' objects cost it 5 us a row (those objects, held until the
thread came, had left the CPU's caches). A batch that fails to be written is
tried again, on a new connection, until the database answers.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import orjson

from . import history_process
from .rows import CaptureRow, RawRow, RequestRecord, Retention, capture_row

PIPE_BYTES = 1 << 20   # Linux's default most for a user's pipe; a batch of 2,000 gateway rows is ~0.5 MiB


class HistoryWriter:
    """Records requests from any thread; a daemon thread hands them in batches to a writer process.

    `record` never blocks and never wakes the thread: it appends to a deque
    (beyond `queue_size` waiting rows it drops the row; `dropped` counts them),
    and the thread wakes every `interval_s` to send what has accumulated, in
    batches of up to `batch_size` rows, one at a time: it waits for the
    process to have written a batch before it sends the next. (Waking it for
    each row, as a `queue.Queue` consumer would be, costs a thread switch and
    a transaction per request under load.) A batch the database refuses
    (down, locked past its timeout) is held by the process and tried again
    every `retry_s` on a new connection; meanwhile the queue's bound holds.
    The process starts with the first batch; if it dies, its batch counts as
    dropped and the next batch starts another.
    `flush()` waits until every row recorded so far is written; `close()`
    flushes, stops the thread and the process (rows it could not write count as dropped)."""

    def __init__(self, location: str | Path, retention: Retention | None = None, batch_size: int = 2_000,
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
        self.batches = 0                    # batches written (one transaction each)
        self.failures = 0                   # batches the database refused (each tried again)
        self.last_error: str | None = None  # the last refusal, until a batch is written again
        self._pending: deque[tuple | threading.Event] = deque()
        self._wake = threading.Event()      # flush/close: do not wait for the interval
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._to_process: int | None = None     # our ends of its pipes
        self._from_process: int | None = None   # (read and closed by the thread only)
        self._pipe_lock = threading.Lock()      # close() closes the pipe the thread may be writing to
        self._thread = threading.Thread(target=self._run, name="routelang-history", daemon=True)
        self._thread.start()

    def record(self, row: RawRow | RequestRecord | tuple, capture: tuple | None = None) -> bool:
        """Queue a row: a RequestRecord, or plain values the caller read (a rows.RawRow, or the
        gateway's rows.GATEWAY_FACTS: nothing of the request is held here) with, when capturing,
        rows.capture_row's arguments (built in the thread). False when the row was dropped: the
        queue is full, or it holds a value JSON cannot (both counted in `dropped`)."""
        if len(self._pending) >= self.queue_size:
            self.dropped += 1
            return False
        if isinstance(row, RequestRecord):
            row, capture = row.raw_row(), row.capture()
        try:   # encoded at once: bytes hold nothing the garbage collector walks while they wait
            encoded = orjson.dumps(row)
        except TypeError:   # (a value JSON cannot hold, say an integer beyond 64 bits: never the caller's error)
            self.dropped += 1
            return False
        self._pending.append((encoded, capture))   # deque.append is atomic: no lock needed
        return True

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def process_id(self) -> int | None:
        """The writer process's, while it runs."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

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
            self._end_process(timeout_s)   # a batch in flight is given up: the thread's wait ends
            self._thread.join(timeout_s)
            self.dropped += sum(1 for item in self._pending if not isinstance(item, threading.Event))
            self._pending.clear()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                while self._pending and not self._stop.is_set():
                    rows, captures, markers = self._take()
                    if rows and not self._write(rows, captures):
                        self.dropped += len(rows)
                    for marker in markers:
                        marker.set()
        finally:
            self._end_process(0)
            self._close_replies()

    def _close_replies(self) -> None:
        """(The thread's alone: it may be reading them; the process's end closes when it exits.)"""
        if self._from_process is not None:
            os.close(self._from_process)
            self._from_process = None

    def _write(self, rows: list[bytes], captures: list[CaptureRow]) -> bool:
        """Has the process write one batch (`rows`: each a RawRow's JSON); False if it ended first
        (closed, or died)."""
        batch = b"".join((orjson.dumps([self.retention.max_rows, self.retention.max_days])[:-1], b",[",
                          b",".join(rows), b"],", orjson.dumps(captures), b"]"))
        try:
            with self._pipe_lock:
                if self._stop.is_set():
                    return False
                if self._process is None or self._process.poll() is not None:
                    self._start_process()
                source = self._from_process
                history_process.write_frame(self._to_process, batch)
        except OSError as exc:   # the process died (a broken pipe)
            self.last_error = f"the history writer process ended: {exc}"
            return False
        while (reply := _read_reply(source)) is not None:
            if reply.startswith(history_process.WRITTEN):
                self.written += len(rows)
                self.batches += 1
                self.last_error = None
                return True
            self.failures += 1
            self.last_error = reply[1:].decode("utf-8", "replace")
        if not self._stop.is_set():
            self.last_error = "the history writer process ended"
        return False

    def _start_process(self) -> None:
        """(With _pipe_lock held, the previous process, if any, ended and reaped by poll().)"""
        if self._to_process is not None:
            os.close(self._to_process)
            self._to_process = None
        self._close_replies()
        ours_in, theirs_out = os.pipe()
        theirs_in, ours_out = os.pipe()
        _widen(ours_out)
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root,
                                                                         os.environ.get("PYTHONPATH"))))}
        try:
            # Its own session: Ctrl-C or a signal to the serving process's group does not cut a
            # batch short; it ends when its input closes (the serving process closed it, or died).
            self._process = subprocess.Popen(
                [sys.executable, "-m", "routelang.registry.history_process", str(self.location),
                 str(self.prune_every_s), str(self.retry_s), str(theirs_in), str(theirs_out)],
                pass_fds=(theirs_in, theirs_out), stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except BaseException:
            os.close(ours_in)
            os.close(ours_out)
            raise
        finally:
            os.close(theirs_in)
            os.close(theirs_out)
        self._to_process, self._from_process = ours_out, ours_in

    def _end_process(self, timeout_s: float) -> None:
        """Closes its input (it ends after the batch it is writing, or at once if the database
        refuses it) and waits for it: no orphan, no zombie."""
        with self._pipe_lock:
            process, self._process = self._process, None
            if self._to_process is not None:
                os.close(self._to_process)
                self._to_process = None
        if process is None:
            return
        try:
            process.wait(max(timeout_s, 5.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _take(self) -> tuple[list[bytes], list[CaptureRow], list[threading.Event]]:
        """Up to batch_size rows (encoded) from the front, their captures built, and the flush
        markers among them."""
        rows: list[bytes] = []
        captures: list[CaptureRow] = []
        markers: list[threading.Event] = []
        pending = self._pending
        while pending and len(rows) < self.batch_size:
            item = pending.popleft()
            if isinstance(item, threading.Event):
                markers.append(item)
                continue
            row, capture = item
            rows.append(row)
            if capture is not None:
                captures.append(capture_row(*capture))
        return rows, captures, markers


def _widen(pipe: int) -> None:
    """A pipe that holds a whole batch (Linux): its write does not wait for the process to read
    the first 64 KiB, each wait costing the serving process a switch of the interpreter's lock."""
    try:
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):   # not Linux, or above /proc/sys/fs/pipe-max-size: the default
        return


def _read_reply(source: int) -> bytes | None:
    try:
        return history_process.read_frame(source)
    except OSError:   # the process died mid-frame
        return None


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
