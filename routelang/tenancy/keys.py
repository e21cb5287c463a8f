"""Tenant keys: issued per workspace (and optionally agent), stored hashed,
revocable, optionally expiring, optionally with budgets and limits of their own.
`KeyStore` keeps them in the registry's `tenant_keys` table, through its Store
(a SQLite file or a Postgres database); `KeyCache` is what a gateway knows of
them, read from the store off the event loop.

A key is `rlk_` + 43 url-safe characters (256 random bits); only its sha256
is stored, and the secret is shown once, by `create`. The key's id
(`key_` + 12 hex digits) names it everywhere else: the history, `keys list`,
the ledger's key scope.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .. import ir
from ..diagnostics import render_text
from ..policies import budgets_source, limits_source, outside_items
from ..registry import RegistryError, Store, open_store
from ..source import Source
from ..timetext import duration_s, parse_iso

PREFIX = "rlk_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,127}")   # a workspace's or agent's name (the admin API's too)


class KeyStoreError(Exception):
    """A key store problem to tell the user (bad name, unknown id, unreadable file); `field`:
    the value at fault, when one is (`limit`, `budget`)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TenantKey:
    id: str
    workspace: str
    agent: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    budgets: tuple[ir.Budget, ...] = ()      # the key's own, counted as the scope ("key", id)
    limits: tuple[ir.RateLimit, ...] = ()

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self, now: float) -> dict:
        return {"id": self.id, "workspace": self.workspace, "agent": self.agent, "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at, "state": self.state(now),
                "budget": budgets_source(self.budgets) if self.budgets else None,
                "limit": limits_source(self.limits) if self.limits else None}

    @classmethod
    def from_row(cls, row: dict) -> TenantKey:
        budgets, limits = row.pop("budgets"), row.pop("limits")
        return cls(**row, budgets=tuple(ir.Budget(**b) for b in json.loads(budgets or "[]")),
                   limits=tuple(ir.RateLimit(**lim) for lim in json.loads(limits or "[]")))


def expiry(text: str, now: float) -> float:
    """When a key expires: in a duration from now (`90m`, `12h`, `30d`, `2w`) or at an
    ISO 8601 date or date-time (without a zone: UTC)."""
    later = duration_s(text)
    if later is not None:
        return now + later
    when = parse_iso(text)
    if when is None:
        raise KeyStoreError(f"{text!r} is not an expiry: give a duration from now (30d, 12h) or an ISO date"
                            " or date-time (2027-01-01, 2027-01-01T09:30Z)")
    return when


def allowance(budget: str | None, limit: str | None) -> tuple[tuple[ir.Budget, ...], tuple[ir.RateLimit, ...]]:
    """A key's own budgets and limits from the language's spelling (`--budget "10 USD per day"`,
    `--limit "60 requests per minute, 20k tokens per minute"`); raises KeyStoreError with the
    located diagnostics."""
    items = {item: text for item, text in (("budget", budget), ("limit", limit)) if text is not None}
    if not items:
        return (), ()
    policy, diagnostics = outside_items("the key", items)
    if diagnostics:
        sources = {f"--{item}": Source(f"--{item}", text) for item, text in items.items()}
        raise KeyStoreError("\n".join(render_text(d, sources) for d in diagnostics),
                            diagnostics[0].span.file.removeprefix("--"))
    return policy.budgets, policy.limits


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """The `tenant_keys` table of a registry (each call one query: the gateway reads it
    through a KeyCache)."""

    COLUMNS = "id, workspace, agent, created_at, expires_at, revoked_at, budgets, limits"

    def __init__(self, location: str | Path):
        try:
            self.store: Store = open_store(location)
        except RegistryError as exc:
            raise KeyStoreError(f"cannot open the key store: {exc}") from None

    def close(self) -> None:
        # (The gateway's lookup threads may be querying: the store's close waits for them.)
        self.store.close()

    def _keys(self, where: str, args: tuple) -> list[TenantKey]:
        rows = self.store.query(f"SELECT {self.COLUMNS} FROM tenant_keys WHERE {where} ORDER BY created_at, id", args)
        return [TenantKey.from_row(dict(row)) for row in rows]

    def create(self, workspace: str, agent: str | None = None, expires_at: float | None = None,
               now: float | None = None, budgets: tuple[ir.Budget, ...] = (),
               limits: tuple[ir.RateLimit, ...] = ()) -> tuple[TenantKey, str]:
        """A new key and its secret (the only time the secret exists outside the client), with its
        own budgets and limits (`allowance` reads them from the language's spelling)."""
        for what, name in (("workspace", workspace), ("agent", agent)):
            if name is not None and not NAME.fullmatch(name):
                raise KeyStoreError(f"{what} {name!r} is not a name (letters, digits, `_`, `-`; as in the .route file)")
        now = time.time() if now is None else now
        if expires_at is not None and expires_at <= now:
            raise KeyStoreError("the expiry is in the past")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = TenantKey("key_" + secrets.token_hex(6), workspace, agent, now, expires_at, None, budgets, limits)
        stored = [json.dumps([item.model_dump(exclude={"span"}) for item in items]) if items else None
                  for items in (budgets, limits)]
        with self.store.write():
            self.store.execute("INSERT INTO tenant_keys (id, digest, workspace, agent, created_at, expires_at,"
                               " budgets, limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (key.id, digest(secret), workspace, agent, now, expires_at, *stored))
        return key, secret

    def list(self, workspace: str | None = None) -> list[TenantKey]:
        return self._keys("TRUE", ()) if workspace is None else self._keys("workspace = ?", (workspace,))

    def revoke(self, key_id: str, now: float | None = None) -> TenantKey:
        now = time.time() if now is None else now
        with self.store.write():
            self.store.execute("UPDATE tenant_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (now, key_id))
        found = self._keys("id = ?", (key_id,))
        if not found:
            raise KeyStoreError(f"no key {key_id!r}")
        return found[0]

    def lookup(self, secret: str) -> TenantKey | None:
        """The key with this secret, usable or not; None: no such key."""
        found = self._keys("digest = ?", (digest(secret),))
        return found[0] if found else None

    def find(self, secret: str, now: float | None = None) -> TenantKey | None:
        """The usable key with this secret, or None (unknown, revoked or expired)."""
        key = self.lookup(secret)
        return key if key is not None and key.usable(time.time() if now is None else now) else None


class NotCached(Exception):
    """Only the registry can tell about this secret now: await `KeyCache.look_up`."""


class KeyCache:
    """What a gateway knows of its keys, so that the registry's query never runs on the event loop.

    A secret's lookup is fresh for `fresh_s` seconds. Past that, the entry is still answered
    while one lookup in a worker thread refreshes it, for up to `stale_s` seconds after it was
    read; past that, and for a secret not seen yet, the request waits for the lookup (in a
    thread too). So a revoked key is refused at most `fresh_s` plus the registry's answer time
    after its revocation: within `stale_s` while the registry answers within `stale_s - fresh_s`."""

    def __init__(self, store: KeyStore, fresh_s: float = 1.0, stale_s: float = 2.0, clock=time.time):
        self.store = store
        self.fresh_s, self.stale_s, self.clock = fresh_s, stale_s, clock
        # Keyed by the credential as a client sends it (`Bearer rlk_...`), so that a request is answered
        # without taking its header apart: credential -> (answered until, refreshed from (never after the
        # first), the usable key or None, the secret). Secrets are kept in this process's memory only, as its
        # requests' headers are.
        self._entries: dict[str, tuple[float, float, TenantKey | None, str]] = {}
        self._lookups: dict[str, asyncio.Future] = {}   # credential -> its lookup under way

    def get(self, credential: str) -> TenantKey | None:
        """The usable key of this credential, or None (unknown, revoked, expired); raises
        NotCached when only a lookup can tell. Call it on the event loop."""
        entry = self._entries.get(credential)
        if entry is None:
            raise NotCached
        now = self.clock()
        if now < entry[1]:   # fresh (the usual case: one comparison)
            return entry[2]
        if now >= entry[0]:
            raise NotCached
        if credential not in self._lookups:
            self._start(credential, entry[3])   # answered meanwhile from the entry
        return entry[2]

    async def look_up(self, credential: str, secret: str) -> TenantKey | None:
        """As `get`, from the registry: `secret` is the key the credential carries (raises
        RegistryError when the registry cannot answer)."""
        lookup = self._lookups.get(credential) or self._start(credential, secret)
        key = await asyncio.shield(lookup)
        return key if key is not None and key.usable(self.clock()) else None

    def forget(self) -> None:
        """Every entry goes (a key was revoked in this process: its next request looks it up)."""
        self._entries.clear()

    def _start(self, credential: str, secret: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        read_at = self.clock()
        lookup = self._lookups[credential] = loop.run_in_executor(None, self.store.lookup, secret)
        lookup.add_done_callback(lambda done: self._done(credential, secret, read_at, done))
        return lookup

    def _done(self, credential: str, secret: str, read_at: float, lookup: asyncio.Future) -> None:
        del self._lookups[credential]
        if lookup.cancelled() or lookup.exception() is not None:
            return   # the entry ages out at `stale_s`; the requests after that get the error from look_up
        key = lookup.result()
        until = read_at + self.stale_s
        if key is not None and key.expires_at is not None:
            until = min(until, key.expires_at)
        if len(self._entries) > 10_000:   # credentials tried and gone
            self._entries.clear()
        usable = key if key is not None and key.usable(read_at) else None
        self._entries[credential] = (until, min(until, read_at + self.fresh_s), usable, secret)
