"""What the request history costs the serving process per gateway request (run by hand).

    python benchmarks/history_hotpath.py [--requests 20000] [--repeat 5] [--postgres]

gateway_hotpath.py's setting (one process, one uvloop, the gateway's application on loopback, a
keep-alive client sending one request after the other, the upstream's answer given without a
call), served from a registry (`serve --registry`) with the history off and on, alternating.
Printed per mode: the best of `--repeat` runs in microseconds of this process's CPU time per
request (all its threads: the event loop's work and the thread that sends the batches; not the
writer process's), and the difference. The best of
several runs of CPU time is the figure least disturbed by other load on a shared machine, where
gateway_overhead.py's medians under wrk move by 10 % from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from gateway_hotpath import CONFIG, answered_call, serve_and_send

from routelang.gateway import executor as executor_module
from routelang.gateway import wiring
from routelang.gateway.logs import JsonLog
from routelang.registry import history
from routelang.registry.backends import open_store


def run(location: str, log: Path, on: bool, requests: int, repeat: int = 1) -> float:
    """CPU us per request of this process, the last of `repeat` runs after a warm-up."""
    writer = history.HistoryWriter(location) if on else False
    services = wiring.build(registry=location, log=JsonLog(log.open("ab")), history=writer)
    services.executor._call = answered_call.__get__(services.executor, executor_module.Executor)
    app = wiring.application(services)
    times = uvloop.run(serve_and_send(app, requests, repeat, None))
    return times[-1] if times else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="a PostgreSQL registry (started for the run)")
    parser.add_argument("--only", choices=("off", "on"),
                        help="one run of --requests with the history so, printing nothing: for instruction counts "
                             "(valgrind --tool=callgrind of two runs with different --requests, the difference "
                             "divided by the difference in requests; the writer process is not traced)")
    args = parser.parse_args()
    postgres = None
    with tempfile.TemporaryDirectory() as scratch:
        if args.postgres:
            from services import PostgresServer

            postgres = PostgresServer()
            location = postgres.new_database()
        else:
            location = str(Path(scratch, "registry.db"))
        try:
            store = open_store(location)
            version, _new = store.push("bench", "bench.json", {"bench.json": json.dumps(CONFIG)}, CONFIG)
            store.deploy("bench", version.version)
            store.close()
            if args.only:
                run(location, Path(scratch, "log.jsonl"), args.only == "on", args.requests, repeat=0)
                return
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeat):
                for on in (False, True):
                    ours = run(location, Path(scratch, "log.jsonl"), on, args.requests)
                    times[on].append(ours)
                    print(f"history {'on ' if on else 'off'}: {ours:.1f} us/request", file=sys.stderr, flush=True)
        finally:
            if postgres is not None:
                postgres.close()
    off, on = min(times[False]), min(times[True])
    print(f"{'Postgres' if args.postgres else 'SQLite'}: history off {off:.1f} us/request "
          f"(runs: {', '.join(f'{t:.1f}' for t in times[False])})")
    print(f"{'':>{len('Postgres') if args.postgres else len('SQLite')}}  history on  {on:.1f} us/request "
          f"(runs: {', '.join(f'{t:.1f}' for t in times[True])})")
    print(f"the history adds {on - off:.1f} us/request ({(on / off - 1) * 100:+.1f}%) to this process; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
