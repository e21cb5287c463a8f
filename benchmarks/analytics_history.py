"""What the admin API's analytics cost on a large request history (run by hand).

    python benchmarks/analytics_history.py [--rows 200000] [--days 30] [--registry postgresql://...]

Fills a new registry (a SQLite file in a temporary folder, or the given empty Postgres database) with
`--rows` gateway rows spread evenly over the last `--days` days, from 20 tenant keys of 5 workspaces over
4 targets, then times each read the endpoints make, with the same code (`tenancy.usage`): the rows of a
window and their sums. Each read runs 5 times; the median is printed, with the rows it read.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from routelang.registry.backends import open_store
from routelang.registry.rows import RequestRecord
from routelang.tenancy import usage
from routelang.tenancy.keys import KeyStore

TARGETS = ["gpt4", "claude_sonnet", "gpt35", "gpt4_backup"]
BATCH = 5_000


def fill(location: str, rows: int, days: float) -> None:
    keys = KeyStore(location)
    ids = [keys.create(f"ws-{i % 5}", "creative" if i % 2 else None)[0].id for i in range(20)]
    keys.close()
    store = open_store(location)
    store.push("bench", "bench.route", {"bench.route": ""}, {"name": "bench", "rules": []})   # rows are a router's
    rng = random.Random(7)
    now = time.time()
    step = days * 86400 / rows
    batch = []
    for i in range(rows):
        ok = rng.random() < 0.97
        record = RequestRecord(router="bench", version=1, rule="default", status="ok" if ok else "error",
                               latency_ms=rng.uniform(100, 2000), tokens_in=rng.randint(10, 900) if ok else None,
                               tokens_out=rng.randint(1, 400) if ok else None, cost=rng.uniform(0, 0.01) if ok else None,
                               client_key_id=rng.choice(ids), first_target=rng.choice(TARGETS),
                               time=now - days * 86400 + i * step)
        batch.append(record.row())
        if len(batch) == BATCH:
            store.insert_rows(batch, [])
            batch = []
    if batch:
        store.insert_rows(batch, [])
    if store.insertion_order == "seq":   # Postgres: the statistics autovacuum gathers on a running database
        store.execute("ANALYZE requests")
    store.close()


def timed(read) -> tuple[float, int]:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        count = read()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--registry", help="an empty Postgres database's URL (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        location = args.registry or str(Path(folder) / "registry.db")
        started = time.perf_counter()
        fill(location, args.rows, args.days)
        print(f"{args.rows} rows over {args.days:g} days written in {time.perf_counter() - started:.1f} s")
        store = open_store(location)
        now = time.time()

        def sums(rows: list[dict]) -> int:
            usage.Totals.of(rows)
            return len(rows)

        reads = {
            "workspace, 30d": lambda: sums(usage.history_rows(store, now - 30 * 86400, workspace="ws-1")),
            "workspace, 24h": lambda: sums(usage.history_rows(store, now - 86400, workspace="ws-1")),
            "models, 24h, one target": lambda: sums(usage.history_rows(store, now - 86400, targets=["gpt4"])),
            "models, 7d, all": lambda: sums(usage.history_rows(store, now - 7 * 86400)),
            "health overview, 1h": lambda: sums(usage.history_rows(store, now - 3600)),
            "metrics, newest 100": lambda: len(usage.history_rows(store, newest=100)),
        }
        for name, read in reads.items():
            seconds, count = timed(read)
            print(f"{name:26} {seconds * 1000:9.1f} ms  ({count} rows)")
        store.close()


if __name__ == "__main__":
    main()
