"""The request history's rows: their columns, the record the gateway and the SDK make of a
request, how a stored row is read back, and the retention limits. The stores (store.py and its
backends) and the writer (history.py) share this definition."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from .errors import RegistryError

COLUMNS = ("id", "time", "router", "version", "rule", "targets", "attempts", "status", "latency_ms", "ttft_ms",
           "tokens_in", "tokens_out", "cost", "split_label", "sticky_key_hash", "client_key_id", "http_status",
           "error", "source", "first_target", "first_outcome", "failed_over")
JSON_COLUMNS = ("targets", "attempts")

# Where a row comes from: a request the gateway served (whole requests, sent upstream) or a
# decision of the SDK / the admin API's `POST /api/route` (decision time only, nothing sent).
GATEWAY, SDK = "gateway", "sdk"
SOURCES = (GATEWAY, SDK)


def _new_id() -> str:
    return os.urandom(16).hex()


@dataclass(slots=True)
class RequestRecord:
    router: str
    version: int | None
    rule: str | None
    status: str              # SDK: "routed", "unmatched"; gateway: "ok", "unmatched", "error", "client_disconnected"
    targets: list = field(default_factory=list)  # {TARGET_FIELDS}, or runtime Targets
    attempts: list[dict] = field(default_factory=list)
    latency_ms: float | None = None
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None
    split_label: str | None = None
    sticky_key_hash: str | None = None
    client_key_id: str | None = None
    http_status: int | None = None
    error: str | None = None
    source: str = GATEWAY
    # Gateway rows: the first target tried (a split's arm), its outcome after its own retries
    # (`ok`, `http_500`, `timeout`, `breaker_open`, ...), and whether another target was called after it.
    first_target: str | None = None
    first_outcome: str | None = None
    failed_over: bool | None = None
    id: str = field(default_factory=_new_id)
    time: float = field(default_factory=time.time)
    # `--capture` only: the request body, and the answer's body (bytes) or a stream's SSE frames (list)
    captured_request: bytes | None = None
    captured_response: bytes | list[bytes] | None = None

    def row(self) -> Row:
        """The values of COLUMNS, in order (its targets not narrowed: see VersionTargets)."""
        return stored_row(self.raw_row())

    def raw_row(self) -> RawRow:
        return (self.id, self.time, self.router, self.version, self.rule, [target_fields(t) for t in self.targets],
                self.attempts, self.status, self.latency_ms, self.ttft_ms, self.tokens_in, self.tokens_out,
                self.cost, self.split_label, self.sticky_key_hash, self.client_key_id, self.http_status, self.error,
                self.source, self.first_target, self.first_outcome, self.failed_over)

    def capture(self) -> tuple | None:
        """capture_row's arguments, or None when nothing was captured."""
        if self.captured_request is None:
            return None
        return self.id, self.time, self.captured_request, self.captured_response

    def capture_row(self) -> CaptureRow | None:
        args = self.capture()
        return None if args is None else capture_row(*args)


Row = tuple              # the values of COLUMNS, in order
RawRow = tuple           # the same, JSON_COLUMNS' values not yet encoded, targets as target_fields give them
CaptureRow = tuple       # (id, time, request text, response text or None)
_JSON_INDEXES = tuple(COLUMNS.index(name) for name in JSON_COLUMNS)
_ROUTER, _VERSION, _RULE, _TARGETS = (COLUMNS.index(name) for name in ("router", "version", "rule", "targets"))


# What the gateway hands over for a request it served (gateway/recording.py: read on the request
# path, nothing computed); the writer process derives the row from it (gateway_row). `strategy`: the
# rule's (a split's first target names its arm); `status`: the row's; times in seconds.
GATEWAY_FACTS = ("id", "time", "router", "version", "rule", "strategy", "targets", "attempts", "status",
                 "http_status", "error", "latency_s", "ttft_s", "tokens_in", "tokens_out", "cost", "sticky_key_hash",
                 "client_key_id")
assert len(GATEWAY_FACTS) != len(COLUMNS)   # (stored_row tells them apart so)


def gateway_row(facts: tuple) -> RawRow:
    """The RawRow of a gateway's GATEWAY_FACTS."""
    (request_id, at, router, version, rule, strategy, targets, attempts, status, http_status, error, latency_s,
     ttft_s, tokens_in, tokens_out, cost, sticky_key_hash, client_key_id) = facts
    split_label = None
    if strategy == "split" and targets:   # the arm: its target's label, else its model name
        arm = target_dict(targets[0])
        split_label = arm["label"] or arm["model_name"]
    first, first_outcome, failed_over = first_target(attempts)
    return (request_id, at, router, version, rule, targets, attempts, status, latency_s * 1000,
            None if ttft_s is None else ttft_s * 1000, tokens_in, tokens_out, cost, split_label, sticky_key_hash,
            client_key_id, http_status, error, GATEWAY, first, first_outcome, failed_over)


def first_target(attempts: list[dict]) -> tuple[str | None, str | None, bool | None]:
    """(the first target, its outcome, whether another target was called after it) from the
    attempts: the first target's outcome is that of its last try (its own retries included), so
    a split arm is judged by its own target, not by the arm it fell over to."""
    if not attempts:
        return None, None, None
    first = attempts[0]["target"]
    outcome = attempts[0]["outcome"]
    failed_over = False
    for attempt in attempts[1:]:
        if attempt["target"] == first:
            outcome = attempt["outcome"]
        elif "ms" in attempt:   # called (a target skipped for its open breaker was not)
            failed_over = True
    return first, outcome, failed_over


def stored_row(raw: RawRow | tuple, versions: VersionTargets | None = None) -> Row:
    """The row to insert (`raw`: a RawRow, or a gateway's GATEWAY_FACTS, told apart by their
    lengths): its targets narrowed against the stored versions (when given), its JSON encoded."""
    row = list(raw if len(raw) == len(COLUMNS) else gateway_row(raw))
    targets = row[_TARGETS]
    if targets:
        row[_TARGETS] = [target_dict(t) for t in targets] if versions is None else \
            versions.narrow(row[_ROUTER], row[_VERSION], row[_RULE], targets)
    for index in _JSON_INDEXES:
        row[index] = json_text(row[index])
    return tuple(row)


def capture_row(request_id: str, at: float, request: bytes, response: bytes | list[bytes] | None) -> CaptureRow:
    """`response`: the answer's body, or a stream's SSE frames (their content is kept)."""
    if isinstance(response, list):
        response = stream_content(response)
    elif response is not None:
        response = response.decode("utf-8", "replace")
    return request_id, at, request.decode("utf-8", "replace"), response


def stream_content(frames: list[bytes]) -> str:
    """The text of an OpenAI-format SSE stream: each chunk's `delta.content`
    (chat) or `text` (completions), concatenated."""
    out: list[str] = []
    for line in b"".join(frames).splitlines():
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        try:
            chunk = json.loads(line[6:])
        except ValueError:
            continue
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if isinstance(text, str):
                out.append(text)
    return "".join(out)


def json_text(value) -> str:
    return orjson.dumps(value).decode()  # (the writer thread holds the GIL less than with json)


# What a row says of each selected target. It is static per router version, so a row keeps each
# target as its index among its rule's targets in the version's compiled config, and readers look
# the fields up there (VersionTargets). A target whose fields are not the config's (a `${VAR}` in
# them, filled in where the request was routed) is kept whole, as a dict of these fields; so are
# the targets of rows written before rows were narrowed (both are read).
TARGET_FIELDS = ("model_name", "provider", "label", "weight")


def target_fields(target) -> list | dict:
    """A selected target as the writer is handed it: a runtime Target's TARGET_FIELDS values
    (a list: cheap to build and to send), or a dict as given."""
    if isinstance(target, dict):
        return target
    return [target.model_name, target.provider, target.label, target.weight]


def target_dict(target) -> dict:
    if isinstance(target, dict):
        return target
    if isinstance(target, list):
        return dict(zip(TARGET_FIELDS, target))
    return {"model_name": target.model_name, "provider": target.provider, "label": target.label,
            "weight": target.weight}


_UNKNOWN_TARGET = dict.fromkeys(TARGET_FIELDS)


class VersionTargets:
    """Each stored version's rules' targets, as rows give them (TARGET_FIELDS, `${VAR}`s as
    written), read from the registry when first asked for. `parsed` (by content hash) may be
    shared by instances: a process that writes batch after batch parses each version once, yet
    asks for its hash each time (a router deleted and pushed again has a new version 1)."""

    def __init__(self, query: Callable[[str, tuple], list[dict]],
                 parsed: dict[str, dict[str, list[dict]]] | None = None):
        self._query = query   # a registry's Store.query
        self._parsed = {} if parsed is None else parsed
        self._rules: dict[tuple[str, int], dict[str, list[dict]]] = {}
        self._keys: dict[tuple[str, int, str], dict[tuple, int]] = {}

    def rules(self, router: str, version: int | None) -> dict[str, list[dict]]:
        """Rule name -> its targets' dicts; {} for a version the registry does not hold."""
        if version is None:
            return {}
        found = self._rules.get((router, version))
        if found is None:
            found = self._rules[(router, version)] = self._read(router, version)
        return found

    def _read(self, router: str, version: int) -> dict[str, list[dict]]:
        hashes = self._query("SELECT content_hash FROM versions WHERE router = ? AND version = ?",
                                   (router, version))
        if not hashes:
            return {}
        digest = hashes[0]["content_hash"]
        if digest not in self._parsed:
            [row] = self._query("SELECT compiled FROM versions WHERE router = ? AND version = ?",
                                      (router, version))
            self._parsed[digest] = rule_targets(json.loads(row["compiled"]))
        return self._parsed[digest]

    def narrow(self, router: str, version: int | None, rule: str | None,
               targets: list[list | dict]) -> list[int | dict]:
        """Each target (as target_fields gives it) as its index in its rule, where the version's
        config has one with its fields; else as a dict."""
        keys = self._keys.get((router, version, rule))
        if keys is None:
            keys = {}
            for index, target in enumerate(self.rules(router, version).get(rule, ()) if rule is not None else ()):
                keys.setdefault(tuple(target.values()), index)
            self._keys[(router, version, rule)] = keys
        out: list[int | dict] = []
        for target in targets:
            if isinstance(target, list):
                index = keys.get(tuple(target))
            else:
                index = keys.get(tuple(map(target.get, TARGET_FIELDS))) if len(target) == len(TARGET_FIELDS) else None
            out.append(target_dict(target) if index is None else index)
        return out

    def widen(self, router: str, version: int | None, rule: str | None, targets: list) -> list[dict]:
        """narrow's inverse: a stored row's targets as dicts."""
        listed = self.rules(router, version).get(rule, ()) if rule is not None else ()
        return [target if isinstance(target, dict) else
                dict(listed[target]) if 0 <= target < len(listed) else dict(_UNKNOWN_TARGET)
                for target in targets]


def rule_targets(config: dict) -> dict[str, list[dict]]:
    """Each rule's targets as rows give them, read from a compiled config as the runtime reads it
    (its `${VAR}`s as written); {} for a config the runtime does not read."""
    from ..runtime.model import ConfigError, plan_from_config

    try:
        plan = plan_from_config(config)
    except ConfigError:
        return {}
    return {rule.name: [target_dict(t) for t in rule.targets] for rule in plan.rules}


def sticky_hash(value) -> str:
    """What the history keeps of a sticky key: a hash, never the key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Retention:
    max_rows: int = 1_000_000
    max_days: float = 30.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Retention:
        """`ROUTELANG_HISTORY_MAX_ROWS` / `ROUTELANG_HISTORY_MAX_DAYS`, else the defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, key, kind in (("ROUTELANG_HISTORY_MAX_ROWS", "max_rows", int),
                                ("ROUTELANG_HISTORY_MAX_DAYS", "max_days", float)):
            text = environ.get(name)
            if text:
                try:
                    values[key] = kind(text)
                except ValueError:
                    raise RegistryError(f"{name}={text!r}: expected a number") from None
                if values[key] <= 0:
                    raise RegistryError(f"{name}={text!r}: expected a number above 0")
        return cls(**values)


def decode_row(row: dict, versions: VersionTargets | None = None) -> dict:
    """A stored row as the SDK, the CLI and the admin API give it. `versions` (the registry's:
    `Store.version_targets()`) names the targets a narrow row keeps as indexes; without it, such a
    row is a ValueError (Store.list_requests and get_request decode with it)."""
    out = dict(row)
    out.pop("seq", None)   # (Postgres: the insertion order)
    for name in JSON_COLUMNS:
        out[name] = json.loads(out[name])
    if out["failed_over"] is not None:
        out["failed_over"] = bool(out["failed_over"])
    targets = out["targets"]
    if any(isinstance(target, int) for target in targets):
        if versions is None:
            raise ValueError(f"request {out['id']}: its targets are named by its router version: "
                             "decode it with the registry's Store.version_targets()")
        out["targets"] = versions.widen(out["router"], out["version"], out["rule"], targets)
    # The names the Mixtrain SDK's examples read.
    out["matched_rule"] = out["rule"]
    out["selected_target"] = out["targets"][0]["model_name"] if out["targets"] else None
    return out


MAX_LIMIT = 10_000   # rows one listing may ask for (the SDK's and the admin API's `limit`)


def check_source(source: str | None) -> str | None:
    """`source` if it is one of SOURCES or None (every row); else a ValueError that names them."""
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    return source
