"""The code and the docs speak of the project itself: no internal work items
("issue 10", "A12"), which mean nothing to a reader of a release."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK_ITEM = re.compile(r"(?i:\bissue \d+)|\bA\d+\b")


def test_no_code_or_doc_names_an_internal_work_item():
    files = [*sorted((ROOT / "routelang").rglob("*.py")), *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in files for number, line in enumerate(path.read_text().splitlines(), 1)
             if WORK_ITEM.search(line)]
    assert found == []
