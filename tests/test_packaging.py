"""The wheel carries the grammar and the standard library, so a plain
(non-editable) install works from any directory."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_contains_grammar_and_stdlib(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("routelang-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "routelang/grammar/routelang.lark" in names
    assert "routelang/stdlib/providers.route" in names
    assert "routelang/stdlib/profiles.route" in names
    assert "routelang/templates/python_module.py.j2" in names
    packaged = zipfile.ZipFile(wheel).read("routelang/grammar/routelang.lark").decode()
    assert packaged == (ROOT / "grammar" / "routelang.lark").read_text()
