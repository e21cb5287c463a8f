"""Client keys: `--api-keys FILE` holds one `sha256:<hex digest>` per line (the
keys themselves are never stored; `#` starts a comment). A request must then
send `Authorization: Bearer <key>`; the key is hashed and looked up.

Make a line with:  printf %s "$KEY" | sha256sum | sed 's/^/sha256:/; s/ .*//'
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from . import errors

LINE = re.compile(r"sha256:([0-9a-f]{64})")


class KeyFileError(Exception):
    pass


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys(path: str) -> frozenset[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    keys = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = LINE.fullmatch(line.lower())
        if match is None:
            raise KeyFileError(f"{path}:{number}: expected `sha256:<64 hex digits>` (keys are stored hashed)")
        keys.add(match.group(1))
    if not keys:
        raise KeyFileError(f"{path}: no keys")
    return frozenset(keys)


def check(authorization: str | None, keys: frozenset[str]) -> tuple[errors.Kind, str] | None:
    """None when the request may pass, else the error to answer with."""
    if not authorization:
        return errors.MISSING_API_KEY, "this gateway requires `Authorization: Bearer <key>`"
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or digest(token.strip()) not in keys:
        return errors.INVALID_API_KEY, "invalid API key"
    return None
