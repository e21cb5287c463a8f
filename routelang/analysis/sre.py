"""Python's regex parser, which the analysis reads patterns with.

`sre_parse` / `sre_constants` are deprecated aliases since 3.11 (importing
them warns); the same modules live on as `re._parser` / `re._constants`."""

import re

sre_parse = getattr(re, "_parser", None)
sre_constants = getattr(re, "_constants", None)
if sre_parse is None:  # pragma: no cover - Python < 3.11
    import sre_constants
    import sre_parse

__all__ = ["sre_constants", "sre_parse"]
