"""The request history's bytes per row, wide (every target's model name, provider, label and weight
in each row, as rows were written before) against narrow (each target as its place in the router
version), on a SQLite file and on PostgreSQL (run by hand).

    python benchmarks/history_rows.py [--rows 20000]

The same gateway-shaped rows (a split of two labelled arms, one attempt each, tokens, cost, a
client key) go into a new registry per backend and shape; printed: the `targets` column's mean
length, and bytes per row of the table and of the table with its indexes (SQLite: its pages in
`dbstat`; Postgres: the day partitions' `pg_relation_size` and `pg_total_relation_size`). A
PostgreSQL 15 is started for the run, as the tests start it (tests/services.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from routelang.registry.backends import open_store
from routelang.registry.rows import RequestRecord
from routelang.runtime.model import plan_from_config

CONFIG = {"name": "chat", "rules": [{
    "name": "ab", "strategy": "split",
    "targets": [{"provider": "openai", "model_name": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1",
                 "label": "control", "weight": 0.5},
                {"provider": "anthropic", "model_name": "claude-sonnet-4-5", "endpoint": "https://api.anthropic.com/v1",
                 "label": "variant", "weight": 0.5}]}]}


def records(count: int) -> list[RequestRecord]:
    arms = plan_from_config(CONFIG).rules[0].targets
    rng = random.Random(7)
    start = time.time() - count * 0.01
    out = []
    for i in range(count):
        arm = arms[0] if rng.random() < 0.5 else arms[1]
        out.append(RequestRecord(
            "chat", 1, "ab", "ok", targets=[arm], attempts=[{"target": arm.label, "outcome": "ok",
                                                                    "ms": round(rng.uniform(50, 900), 3),
                                                                    "status": 200}],
            latency_ms=rng.uniform(50, 900), tokens_in=rng.randint(10, 2000), tokens_out=rng.randint(10, 800),
            cost=rng.uniform(0, 0.01), split_label=arm.label, client_key_id="team-a", http_status=200,
            first_target=arm.label, first_outcome="ok", failed_over=False, time=start + i * 0.01))
    return out


def fill(location: str, rows: list[RequestRecord], narrow: bool):
    store = open_store(location)
    version, _new = store.push("chat", "chat.json", {"chat.json": json.dumps(CONFIG)}, CONFIG)
    store.deploy("chat", version.version)
    for at in range(0, len(rows), 500):
        page = rows[at:at + 500]
        if narrow:
            store.insert_requests(page)
        else:   # as rows were written before: every target whole
            store.insert_rows([r.row() for r in page], [])
    return store


def sqlite_sizes(store) -> tuple[int, int]:
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sizes = dict(store.conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    table = sizes["requests"]
    return table, table + sizes["requests_by_router_time"]


def postgres_sizes(store) -> tuple[int, int]:
    store.execute("VACUUM ANALYZE requests")
    [row] = store.query("SELECT SUM(pg_relation_size(i.inhrelid)) AS heap, SUM(pg_total_relation_size(i.inhrelid)) "
                        "AS total FROM pg_inherits i WHERE i.inhparent = 'requests'::regclass")
    return int(row["heap"]), int(row["total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    from services import PostgresServer

    rows = records(args.rows)
    scratch = Path(tempfile.mkdtemp(prefix="history-rows-"))
    postgres = PostgresServer()
    print("| backend | rows | targets column (mean chars) | table bytes/row | with indexes bytes/row |")
    print("|---|---|---:|---:|---:|")
    try:
        for backend, new_location, sizes in (
                ("SQLite", lambda shape: str(scratch / f"{shape}.db"), sqlite_sizes),
                ("Postgres", lambda shape: postgres.new_database(), postgres_sizes)):
            for shape in ("wide", "narrow"):
                store = fill(new_location(shape), rows, narrow=shape == "narrow")
                [mean] = store.query("SELECT AVG(LENGTH(targets)) AS n FROM requests")
                table, total = sizes(store)
                print(f"| {backend} | {shape} | {float(mean['n']):.1f} | {table / len(rows):.1f} | "
                      f"{total / len(rows):.1f} |", flush=True)
                store.close()
    finally:
        postgres.close()


if __name__ == "__main__":
    main()
