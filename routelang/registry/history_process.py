"""The request history's writer process: it receives batches of rows from a HistoryWriter
(history.py) over a pipe, derives a gateway's rows from what it read (rows.gateway_row), narrows
their targets to indexes into their stored version (rows.VersionTargets), encodes their JSON
columns, inserts them through the registry's Store and prunes to the retention limits, so that
none of that work holds the serving process's GIL or counts in its CPU. It runs at a lower
scheduling priority than the serving process.

The protocol, both ways a frame of a 4-byte length then the payload:
  to the process    `orjson [max_rows, max_days, raw rows, capture rows]` (one batch)
  from the process  `W<count>` (the batch is written) or `F<message>` (the database refused it;
                    it is tried again every `retry_s` on a new connection, until written)
One batch is in flight at a time: the writer sends the next after `W`, so rows waiting for a
database that is down stay in the writer's bounded queue. The process ends when its input
closes (the writer closed, or the serving process gone); a batch still refused then is lost,
and the writer counts it as dropped."""

from __future__ import annotations

import os
import select
import struct
import sys
import time

import orjson

from .backends import open_store
from .errors import StorageError
from .rows import Retention, stored_row
from .store import Store

_LENGTH = struct.Struct(">I")
NICENESS = 10   # added to the serving process's: the writer's scheduling priority is below it
WRITTEN, FAILED = b"W", b"F"


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_LENGTH.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def read_frame(fd: int) -> bytes | None:
    """The next frame's payload, or None at the end of the input."""
    head = _read_exactly(fd, _LENGTH.size)
    return None if head is None else _read_exactly(fd, _LENGTH.unpack(head)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def serve(location: str, prune_every_s: float, retry_s: float, source: int, sink: int) -> None:
    store: Store | None = None
    parsed: dict = {}   # each version's targets, by content hash (rows.VersionTargets)
    last_prune = 0.0
    try:
        while (frame := read_frame(source)) is not None:
            max_rows, max_days, raw_rows, captures = orjson.loads(frame)
            captures = [tuple(capture) for capture in captures]
            while True:
                try:
                    if store is None:
                        store = open_store(location)
                        store.tune_for_history()
                    versions = store.version_targets(parsed)
                    rows = [stored_row(raw, versions) for raw in raw_rows]
                    store.insert_rows(rows, captures)
                    break
                except StorageError as exc:
                    write_frame(sink, FAILED + str(exc).encode())
                    store = _closed(store)
                    if select.select([source], [], [], retry_s)[0]:
                        return   # the writer closed (a batch never arrives while one is in flight)
            # Pruned before the batch is said written: a flush() returns with the retention applied.
            now = time.monotonic()
            if now - last_prune >= prune_every_s:
                try:
                    store.prune(Retention(max_rows=max_rows, max_days=max_days))
                    last_prune = now
                except StorageError as exc:   # written; pruned at a later batch
                    print(f"routelang history: prune failed: {exc}", file=sys.stderr)
                    store = _closed(store)
            write_frame(sink, WRITTEN + str(len(rows)).encode())
    finally:
        _closed(store)


def _closed(store: Store | None) -> None:
    if store is not None:
        store.close()


def main() -> None:
    """`python -m routelang.registry.history_process LOCATION PRUNE_EVERY_S RETRY_S SOURCE_FD SINK_FD`
    (the pipes are their own descriptors: what a library prints on stdout cannot garble a frame)."""
    location, prune_every_s, retry_s, source, sink = sys.argv[1:6]
    # Background work: on a busy machine the serving process comes first (its queue's bound holds
    # what waits meanwhile), and the process catches up when the CPU is free.
    os.nice(NICENESS)
    serve(location, float(prune_every_s), float(retry_s), int(source), int(sink))


if __name__ == "__main__":
    main()
