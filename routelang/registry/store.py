"""The registry's storage port: routers, their immutable versions,
deployments, and the request history's rows.

`open_store(location)` opens a registry: a path is a SQLite file (`sqlite.py`), a
`postgresql://` URL a Postgres database (`postgres.py`). Each backend module
is the only one that speaks its database; what is the same on both (version
numbering, deploy and rollback, the history's queries) is written once here,
in SQL both understand, with `?` placeholders.

Every write is one transaction holding the registry's write lock (SQLite:
`BEGIN IMMEDIATE`; Postgres: a transaction-scoped advisory lock), so several
processes pushing at once never give one version number twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RegistryError

if TYPE_CHECKING:
    from .rows import CaptureRow, RequestRecord, Retention, Row, VersionTargets

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


# A router's name is also a path segment and the NAME of NAME@VERSION.
ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not ROUTER_NAME.fullmatch(name):
        raise RegistryError(f"{name!r} is not a router name: letters, digits, `.`, `_` and `-`, "
                            "starting with a letter or digit, at most 128 characters")
    return name


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def default_location() -> str | Path:
    """`$ROUTELANG_REGISTRY` (a path or a postgresql:// URL), else
    `$XDG_DATA_HOME/routelang/registry.db` (`~/.local/share/routelang/registry.db`
    when XDG_DATA_HOME is unset)."""
    explicit = os.environ.get("ROUTELANG_REGISTRY")
    if explicit:
        return explicit if is_url(explicit) else Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "routelang" / "registry.db"



def redacted(location: str | Path) -> str:
    """The location as it may be shown and logged: a URL's password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(location)) if is_url(location) else str(location)


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


class Store(ABC):
    """A registry, the port every user of one goes through: the SQL both backends share is
    written here once, the rest is each backend's (sqlite.py, postgres.py). `open_store`
    (backends.py) opens the one a location names."""

    location: str           # the path or URL it was opened with (`redacted` for showing it)
    insertion_order: str    # the column that orders rows of equal time as they were written

    # ---- what each backend provides -----------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        """Rows as dicts (`?` placeholders); driver errors become StorageError."""

    @abstractmethod
    def execute(self, sql: str, args: tuple | list = ()) -> int:
        """A statement; the number of rows it changed."""

    @abstractmethod
    def write(self) -> AbstractContextManager[None]:
        """One write transaction holding the registry's write lock."""

    @abstractmethod
    def insert_rows(self, rows: list[Row], captures: list[CaptureRow]) -> None:
        """History rows (the values of rows.COLUMNS) and captures, in one transaction."""

    def insert_requests(self, records: list[RequestRecord]) -> None:
        from .rows import stored_row

        versions = self.version_targets()
        self.insert_rows([stored_row(r.raw_row(), versions) for r in records],
                         [c for r in records if (c := r.capture_row()) is not None])

    def version_targets(self, parsed: dict | None = None) -> VersionTargets:
        """What narrow history rows' targets name (rows.VersionTargets), read from this registry."""
        from .rows import VersionTargets

        return VersionTargets(self.query, parsed)

    @abstractmethod
    def prune(self, retention: Retention, now: float | None = None) -> int:
        """Apply the retention: the number of history rows deleted."""

    def tune_for_history(self) -> None:
        """Settings of the history writer's own connection (SQLite: no fsync per batch)."""

    notifies = False   # whether `watch` can tell of a deploy at once (else a gateway polls)

    def watch(self, changed: Callable[[], None], stop: threading.Event) -> None:
        """Call `changed()` whenever any process changes what is deployed, until `stop` is set
        (blocking: run it in a thread). Only where `notifies`."""
        raise TypeError(f"{type(self).__name__} does not notify: poll it")

    @property
    def shown(self) -> str:
        return redacted(self.location)

    # ---- routers ------------------------------------------------------------------------

    def routers(self) -> list[dict]:
        return self.query(
            "SELECT r.name, r.active_version, (SELECT MAX(version) FROM versions v WHERE v.router = r.name) "
            "AS latest FROM routers r ORDER BY r.name")

    def active_version(self, router: str) -> int | None:
        rows = self.query("SELECT active_version FROM routers WHERE name = ?", (router,))
        if not rows:
            raise RegistryError(f"no router called {router!r}", self.shown)
        return rows[0]["active_version"]

    def active_versions(self) -> dict[str, int]:
        """Every deployed router's active version (what a registry gateway serves)."""
        rows = self.query("SELECT name, active_version FROM routers WHERE active_version IS NOT NULL")
        return {row["name"]: row["active_version"] for row in rows}

    def delete(self, router: str) -> None:
        """The router, its versions, deployments and request history."""
        with self.write():
            if self.execute("DELETE FROM routers WHERE name = ?", (router,)) == 0:
                raise RegistryError(f"no router called {router!r}", self.shown)
            self.execute("DELETE FROM captures WHERE id IN (SELECT id FROM requests WHERE router = ?)", (router,))
            self.execute("DELETE FROM requests WHERE router = ?", (router,))
            self._deployed_changed()

    # ---- versions -----------------------------------------------------------------------

    def push(self, router: str, entry: str, sources: dict[str, str], compiled: dict,
             message: str = "", from_config: bool = False) -> tuple[Version, bool]:
        """Store a new version unless one with the same content exists:
        (the version, whether it is new). `from_config`: the source is text imported
        from a config (`update()`, a config push), so it is the compiled config that
        says what was given: a version compiled to the same config is the same (an
        `update()` that changes nothing after a pushed file makes no version)."""
        check_name(router)
        digest = content_hash(sources, compiled)
        with self.write():
            self.execute("INSERT INTO routers (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (router, time.time()))
            rows = self.query("SELECT version FROM versions WHERE router = ? AND content_hash = ?", (router, digest))
            existing = rows[0]["version"] if rows else None
            if existing is None and from_config:
                existing = next((r["version"] for r in self.query(
                    "SELECT version, compiled FROM versions WHERE router = ? ORDER BY version", (router,))
                    if json.loads(r["compiled"]) == compiled), None)
            if existing is None:
                number = self.query("SELECT COALESCE(MAX(version), 0) + 1 AS next FROM versions WHERE router = ?",
                                    (router,))[0]["next"]
                self.execute(
                    "INSERT INTO versions (router, version, content_hash, message, created_at, entry, sources, "
                    "compiled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (router, number, digest, message, time.time(), entry, json.dumps(sources, ensure_ascii=False),
                     json.dumps(compiled, ensure_ascii=False)))
        if existing is not None:
            return self.version(router, existing), False
        return self.version(router, number), True

    def versions(self, router: str) -> list[dict]:
        self.active_version(router)  # raises for an unknown router
        return self.query("SELECT router, version, content_hash, message, created_at FROM versions "
                          "WHERE router = ? ORDER BY version", (router,))

    def version(self, router: str, version: int | None = None) -> Version:
        """A stored version; None: the active one, else the latest."""
        if version is None:
            version = self.active_version(router)
        if version is None:
            rows = self.query("SELECT * FROM versions WHERE router = ? ORDER BY version DESC LIMIT 1", (router,))
        else:
            rows = self.query("SELECT * FROM versions WHERE router = ? AND version = ?", (router, version))
        if not rows:
            self.active_version(router)
            raise RegistryError(f"router {router!r} has no version {version}")
        row = rows[0]
        return Version(row["router"], row["version"], row["content_hash"], row["message"], row["created_at"],
                       row["entry"], json.loads(row["sources"]), json.loads(row["compiled"]))

    # ---- deployments --------------------------------------------------------------------

    def deploy(self, router: str, version: int) -> None:
        with self.write():
            if not self.query("SELECT 1 AS found FROM versions WHERE router = ? AND version = ?", (router, version)):
                self.version(router, version)  # raises the right error
            self.execute("INSERT INTO deployments (router, version, deployed_at) VALUES (?, ?, ?)",
                         (router, version, time.time()))
            self.execute("UPDATE routers SET active_version = ? WHERE name = ?", (version, router))
            self._deployed_changed()

    def rollback(self, router: str) -> tuple[int, int]:
        """Make the version deployed before the current deployment active again:
        (from version, to version). Rolling back again goes further back."""
        with self.write():
            live = self.query("SELECT id, version FROM deployments WHERE router = ? AND rolled_back = 0 "
                              "ORDER BY id DESC LIMIT 2", (router,))
            if len(live) < 2:
                self.active_version(router)
                raise RegistryError(f"router {router!r} has no earlier deployment to roll back to")
            current, previous = live
            self.execute("UPDATE deployments SET rolled_back = 1 WHERE id = ?", (current["id"],))
            self.execute("UPDATE routers SET active_version = ? WHERE name = ?", (previous["version"], router))
            self._deployed_changed()
        return current["version"], previous["version"]

    def deployments(self, router: str) -> list[dict]:
        return self.query("SELECT version, deployed_at, rolled_back FROM deployments WHERE router = ? "
                          "ORDER BY id", (router,))

    def _deployed_changed(self) -> None:
        """Inside a write that changed what is deployed: tell the listeners at commit (Postgres)."""

    # ---- the request history (reading) --------------------------------------------------

    def list_requests(self, router: str, limit: int = 100, source: str | None = None) -> list[dict]:
        """The newest first; only the rows of `source` (gateway, sdk) when given."""
        from .rows import check_source, decode_row

        sql, args = "SELECT * FROM requests WHERE router = ?", [router]
        if check_source(source) is not None:
            sql += " AND source = ?"
            args.append(source)
        rows = self.query(f"{sql} ORDER BY time DESC, {self.insertion_order} DESC LIMIT ?", (*args, limit))
        versions = self.version_targets()
        return [decode_row(r, versions) for r in rows]

    def get_request(self, request_id: str) -> dict | None:
        """The row; with `capture` ({request, response}) when it was captured."""
        from .rows import decode_row

        rows = self.query("SELECT * FROM requests WHERE id = ?", (request_id,))
        if not rows:
            return None
        out = decode_row(rows[0], self.version_targets())
        captured = self.query("SELECT request, response FROM captures WHERE id = ?", (request_id,))
        if captured:
            out["capture"] = captured[0]
        return out

    def split_rows(self, router: str, rule: str | None, since: float | None, until: float | None,
                   source: str | None) -> list[dict]:
        """The rows of `router` assigned to a split arm, oldest first (what `routelang ab` reads)."""
        sql = ("SELECT rule, split_label, status, first_outcome, failed_over, latency_ms, ttft_ms, tokens_in, "
               "tokens_out, cost, version, time FROM requests WHERE router = ? AND split_label IS NOT NULL")
        args: list[Any] = [router]
        for clause, value in (("rule = ?", rule), ("time >= ?", since), ("time < ?", until),
                              ("source = ?", source)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        return self.query(f"{sql} ORDER BY time, {self.insertion_order}", args)

    def rule_names(self, router: str) -> set[str]:
        """The rules of every stored version of `router` and of its recorded requests."""
        names = {row["rule"] for row in self.query("SELECT DISTINCT rule FROM requests WHERE router = ? AND rule "
                                                   "IS NOT NULL", (router,))}
        for row in self.query("SELECT compiled FROM versions WHERE router = ?", (router,)):
            names.update(r.get("name") for r in json.loads(row["compiled"]).get("rules", []) if r.get("name"))
        return names
