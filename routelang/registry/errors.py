"""What a registry operation raises (store.py and its backends, the history, the CLI and the SDK catch it)."""

from __future__ import annotations

from pathlib import Path


class RegistryError(Exception):
    """A registry operation that cannot be done (no such router or version, ...).

    `message` says what; `registry`, where (a path, or a URL without its password), is added by
    str() (for the CLI and the local SDK) but is not in `message`, which the admin API answers
    with: a path or a database on the server is none of a remote client's business."""

    def __init__(self, message: str, registry: str | Path | None = None):
        super().__init__(message)
        self.message = message
        self.registry = registry

    def __str__(self) -> str:
        return self.message if self.registry is None else f"{self.message} in the registry {self.registry}"


class StorageError(RegistryError):
    """The registry's database failed (unreachable, locked past the timeout, unreadable, refusing
    a write): `message` is the driver's reason on one line (drivers add hints on lines of their
    own). Never the state of a router: whoever turns a RegistryError into "no such router" or
    "nothing to roll back" lets this one through."""

    def __init__(self, message: str, registry: str | Path | None = None):
        super().__init__(" ".join(message.split()), registry)

    def __str__(self) -> str:
        if self.registry is None:
            return self.message
        return f"the registry {self.registry} cannot be used now: {self.message}"
