"""`routelang import`: another router's config -> a `.route` file.

    text, notes = import_text(path.read_text(), "config.yaml")          # the format detected
    text, notes = import_text(text, "portkey.json", fmt="portkey")

One module per format: mixtrain.py (Mixtrain routing JSON; also the front end
of `routelang check CONFIG.json`), litellm.py (LiteLLM proxy config.yaml),
portkey.py (Portkey gateway config JSON), hybrid.py (the hybrid inference
router's routing.yaml with models.yaml). common.py holds what they share.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .common import ImportNote, ImportProblem

FORMATS = ("mixtrain", "litellm", "portkey", "hybrid")


class UnreadableConfig(ValueError):
    """The text is neither JSON nor YAML. `where` is "LINE:COL" when known."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.where = where


def parse(text: str) -> Any:
    """A config's text: JSON when it opens with `{` or `[` (read as Mixtrain and
    Portkey read it), else YAML (LiteLLM's and the hybrid router's)."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnreadableConfig(f"invalid JSON: {exc.msg}", f"{exc.lineno}:{exc.colno}") from None
        except RecursionError:
            raise UnreadableConfig("invalid JSON: nested too deeply") from None
    import yaml  # only the YAML formats pay for it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else None
        raise UnreadableConfig(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", where) from None
    except RecursionError:
        raise UnreadableConfig("invalid YAML: nested too deeply") from None


def detect(config: Any) -> str | None:
    """The format a parsed config is in, from the keys only that format has."""
    from . import hybrid, litellm, portkey

    if isinstance(config, dict) and isinstance(config.get("rules"), list):
        return "mixtrain"
    for name, module in (("litellm", litellm), ("hybrid", hybrid), ("portkey", portkey)):
        if module.looks_like(config):
            return name
    return None


def importer(fmt: str) -> Callable[..., tuple[str, list[ImportNote]]]:
    """(config, source_name) -> (text, notes) for a format."""
    if fmt == "mixtrain":
        from .mixtrain import import_config_with_notes
        return import_config_with_notes
    if fmt == "litellm":
        from .litellm import import_litellm
        return import_litellm
    if fmt == "portkey":
        from .portkey import import_portkey
        return import_portkey
    if fmt == "hybrid":
        from .hybrid import import_hybrid
        return import_hybrid
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


__all__ = ["FORMATS", "ImportNote", "ImportProblem", "UnreadableConfig", "detect", "importer", "parse"]
