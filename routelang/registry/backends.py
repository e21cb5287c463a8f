"""Opening a registry: a path is a SQLite file (sqlite.py), a postgresql:// URL a
Postgres database (postgres.py, whose driver is imported only then)."""

from __future__ import annotations

from pathlib import Path

from .store import Store, default_location, is_url


def open_store(location: str | Path | None = None, create: bool = True) -> Store:
    """The registry at `location` (default: `default_location()`). `create=False`: a registry
    that does not exist yet is a RegistryError (reading never creates one)."""
    location = default_location() if location is None else location
    if is_url(location):
        from .postgres import PostgresStore

        return PostgresStore(str(location), create)
    from .sqlite import SqliteStore

    return SqliteStore(location, create)
