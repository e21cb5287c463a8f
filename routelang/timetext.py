"""Times as users write them and read them: ISO 8601 (UTC, spelled with `Z`)
and durations (`90s`, `30m`, `24h`, `7d`, `2w`). `routelang ab --since`,
`requests`, `usage`, `keys create --expires` and the admin API all read and
print times through here, so they all accept and show the same spellings."""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def duration_s(text: str) -> float | None:
    """The seconds of a duration (`90s`, `30m`, `24h`, `7d`, `2w`), or None when `text` is not one."""
    match = _DURATION.fullmatch(text.strip())
    return None if match is None else float(match[1]) * _UNIT_S[match[2]]


def parse_iso(text: str) -> float | None:
    """The timestamp of an ISO 8601 date or date-time (without a zone: UTC), or None when `text` is not one."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def iso(timestamp: float | None, timespec: str = "seconds") -> str | None:
    """`2026-12-07T13:18:06Z` (None stays None)."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec=timespec).replace(
        "+00:00", "Z")
