"""`routelang registry copy SRC DST`: a whole registry into an empty one, across
backends (a SQLite file to Postgres when a team outgrows one machine, and back):
routers, every version, the deployments in order, the request history and its
captures. Through the Store port only, so any pair of backends works."""

from __future__ import annotations

from dataclasses import dataclass

from .rows import COLUMNS, RequestRecord, VersionTargets, decode_row
from .store import RegistryError, Store

PAGE = 5_000   # history rows read and written at a time


@dataclass
class Copied:
    routers: int = 0
    versions: int = 0
    deployments: int = 0
    requests: int = 0


def copy_registry(source: Store, target: Store) -> Copied:
    """Copy `source` into `target`, which must hold no router yet (a copy never merges)."""
    if target.routers():
        raise RegistryError(f"the registry {target.shown} is not empty: copy into a new one")
    copied = Copied()
    with target.write():
        for row in source.query("SELECT name, active_version, created_at FROM routers ORDER BY name"):
            target.execute("INSERT INTO routers (name, active_version, created_at) VALUES (?, ?, ?)",
                           (row["name"], row["active_version"], row["created_at"]))
            copied.routers += 1
        for row in source.query("SELECT router, version, content_hash, message, created_at, entry, sources, "
                                "compiled FROM versions ORDER BY router, version"):
            target.execute("INSERT INTO versions (router, version, content_hash, message, created_at, entry, "
                           "sources, compiled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(row.values()))
            copied.versions += 1
        for row in source.query("SELECT router, version, deployed_at, rolled_back FROM deployments ORDER BY id"):
            target.execute("INSERT INTO deployments (router, version, deployed_at, rolled_back) VALUES (?, ?, ?, ?)",
                           tuple(row.values()))
            copied.deployments += 1
    versions = source.version_targets()   # a row's targets as dicts: narrowed again against DST's versions
    offset = 0
    while True:
        rows = source.query(f"SELECT r.*, c.request AS captured_request, c.response AS captured_response "
                            f"FROM requests r LEFT JOIN captures c ON c.id = r.id "
                            f"ORDER BY r.time, r.{source.insertion_order} LIMIT ? OFFSET ?", (PAGE, offset))
        if not rows:
            return copied
        target.insert_requests([_record(row, versions) for row in rows])
        copied.requests += len(rows)
        offset += len(rows)


def _record(row: dict, versions: VersionTargets) -> RequestRecord:
    captured_request, captured_response = row.pop("captured_request"), row.pop("captured_response")
    decoded = decode_row(row, versions)
    record = RequestRecord(**{name: decoded[name] for name in COLUMNS})
    if captured_request is not None:
        record.captured_request = captured_request.encode()
        record.captured_response = None if captured_response is None else captured_response.encode()
    return record
