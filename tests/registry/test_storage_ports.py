"""The registry's storage is a port with one module per database: nothing else in
routelang speaks SQLite or imports a database driver, and psycopg is imported only
when a postgresql:// registry is opened."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import routelang

PACKAGE = Path(routelang.__file__).parent
DRIVERS = {"sqlite3": "registry/sqlite.py", "psycopg": "registry/postgres.py", "psycopg2": None, "asyncpg": None}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_backend_modules_import_a_database_driver():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for driver in imported_modules(path) & DRIVERS.keys():
            if DRIVERS[driver] != where:
                offenders.append(f"{where} imports {driver}")
    assert offenders == []


def test_psycopg_is_imported_only_for_a_postgres_registry(tmp_path):
    code = ("import sys, routelang, routelang.cli, routelang.registry.sdk, routelang.gateway.app; "
            "from routelang.registry.backends import open_store; open_store(sys.argv[1]).close(); "
            "print('psycopg' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.db")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
