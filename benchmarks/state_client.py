"""Which Redis client the shared state uses: redis-py's asyncio client (with hiredis)
against valkey-glide, on this machine (run by hand).

    python benchmarks/state_client.py [--calls 4000] [--in-flight 100]

Starts a redis-server on a free loopback port in a temporary folder and runs, with
each client, what a gateway replica sends: EVALSHA of a small Lua script (HINCRBY
on a hash with the server's TIME, as a breaker's outcome is recorded), one at a
time (p50 and p99 of the round trip) and `--in-flight` at once (calls per second).
The two clients alternate three times, so a noisy neighbour hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

SCRIPT = """
local now = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'at', now[1] * 1000 + math.floor(now[2] / 1000))
return redis.call('HGET', KEYS[1], 'failures')
"""
KEY = "routelang:v1:{bench}:breaker:x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def redis_py(port: int, calls: int, in_flight: int) -> tuple[list[float], float]:
    import redis.asyncio as redis

    client = redis.Redis(host="127.0.0.1", port=port, max_connections=in_flight)
    script = client.register_script(SCRIPT)
    try:
        return await measure(lambda: script(keys=[KEY]), calls, in_flight)
    finally:
        await client.aclose()


async def glide(port: int, calls: int, in_flight: int) -> tuple[list[float], float]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

    client = await GlideClient.create(GlideClientConfiguration([NodeAddress("127.0.0.1", port)]))
    script = Script(SCRIPT)
    try:
        return await measure(lambda: client.invoke_script(script, keys=[KEY]), calls, in_flight)
    finally:
        await client.close()


async def measure(call, calls: int, in_flight: int) -> tuple[list[float], float]:
    for _ in range(200):  # warm up (connections, the script cached)
        await call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1e6)

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls // in_flight) for _ in range(in_flight)))
    rate = (calls // in_flight) * in_flight / (time.perf_counter() - start)
    return times, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="routelang-redis-bench-")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        print(f"{'client':<24} {'p50 us':>8} {'p99 us':>8} {'calls/s':>9}   ({args.in_flight} in flight)")
        for _round in range(3):
            for name, run in (("redis-py asyncio+hiredis", redis_py), ("valkey-glide", glide)):
                times, rate = asyncio.run(run(port, args.calls, args.in_flight))
                times.sort()
                print(f"{name:<24} {statistics.median(times):8.1f} {times[int(len(times) * 0.99)]:8.1f} {rate:9.0f}")
    finally:
        server.terminate()
        server.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
