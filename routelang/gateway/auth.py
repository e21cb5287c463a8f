"""Client keys: `--api-keys FILE` holds one `sha256:<hex digest> [ID]` per line
(the keys themselves are never stored; `#` starts a comment). A request must
then send `Authorization: Bearer <key>`; the key is hashed and looked up. The
entry's ID (letters, digits, `.`, `_`, `-`; default: the digest's first 12 hex
digits) is what the request history records as the client key: never the key.

Make a line with:  printf %s "$KEY" | sha256sum | sed 's/^/sha256:/; s/ .*/ team-a/'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

from . import errors

LINE = re.compile(r"sha256:([0-9a-fA-F]{64})(?:\s+([A-Za-z0-9._-]{1,64}))?")


class KeyFileError(Exception):
    pass


class Refused(Exception):
    """A request without a valid key: the error to answer with."""

    def __init__(self, kind: errors.Kind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys(path: str) -> dict[str, str]:
    """{hex digest: key id}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    keys: dict[str, str] = {}
    ids: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = LINE.fullmatch(line)
        if match is None:
            raise KeyFileError(f"{path}:{number}: expected `sha256:<64 hex digits> [ID]` (keys are stored hashed)")
        hexdigest = match.group(1).lower()
        key_id = match.group(2) or hexdigest[:12]
        if key_id in ids and keys.get(hexdigest) != key_id:
            raise KeyFileError(f"{path}:{number}: the ID {key_id!r} is also the ID of line {ids[key_id]}")
        ids.setdefault(key_id, number)
        keys[hexdigest] = key_id
    if not keys:
        raise KeyFileError(f"{path}: no keys")
    return keys


Keys = Mapping[str, str] | AbstractSet[str]  # {digest: key id}, or digests (each one's id: its first 12 hex)


def identify(authorization: str | None, keys: Keys) -> str:
    """The id of the client's key; raises Refused when the request may not pass."""
    if not authorization:
        raise Refused(errors.MISSING_API_KEY, "this gateway requires `Authorization: Bearer <key>`")
    scheme, _, token = authorization.partition(" ")
    hexdigest = digest(token.strip())
    if scheme.lower() != "bearer" or hexdigest not in keys:
        raise Refused(errors.INVALID_API_KEY, "invalid API key")
    return keys[hexdigest] if isinstance(keys, Mapping) else hexdigest[:12]


def check(authorization: str | None, keys: Keys) -> tuple[errors.Kind, str] | None:
    """None when the request may pass, else the error to answer with."""
    try:
        identify(authorization, keys)
    except Refused as refused:
        return refused.kind, refused.message
    return None
