"""How long the language server takes to publish diagnostics after a change.

    python benchmarks/lsp_latency.py [RULES...]      # default: 200 1000

Starts `python -m routelang.lsp` over stdio (pytest-lsp's client), opens a
generated router of RULES rules (the shape of benchmarks/lint_diff.py), then
sends changes (one threshold edited each time) and prints, per size, the
time from sending the change to the checker's diagnostics (the first
publication) and to the lint findings (the second). The baseline timed in the
same run is `compile_text` of the same text in this process: the checker's
step cannot be faster than compiling. Goal: checker's diagnostics within
200 ms at 1,000 rules. Nothing is asserted: read the table.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "lint"))
import generated_routers

from routelang.compiler import compile_text

CHANGES = 5


async def measure(client: LanguageClient, times: list[float], directory: Path, rules: int) -> tuple[list, list]:
    path = directory / f"bench{rules}.route"
    text = generated_routers.bench(rules)
    path.write_text(text)
    uri = path.as_uri()
    times.clear()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="route", version=1, text=text)))
    await wait_for(times, 2)  # checker, then lint
    checker, linted = [], []
    for version in range(2, 2 + CHANGES):
        changed = generated_routers.bench(rules, bump=version)
        times.clear()
        sent = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=changed)]))
        await wait_for(times, 2)
        checker.append(times[0] - sent)
        linted.append(times[1] - sent)
    return checker, linted


async def wait_for(times: list[float], count: int, timeout: float = 300) -> None:
    deadline = time.perf_counter() + timeout
    while len(times) < count:
        if time.perf_counter() > deadline:
            raise TimeoutError("the server published nothing")
        await asyncio.sleep(0.002)


def baseline(rules: int) -> float:
    text = generated_routers.bench(rules, bump=1)
    compile_text(text, "warm.route")
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        compile_text(text, "bench.route")
        best = min(best, time.perf_counter() - start)
    return best


async def main(sizes: list[int]) -> None:
    times: list[float] = []
    client = LanguageClient()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        times.append(time.perf_counter())

    await client.start_io(sys.executable, "-m", "routelang.lsp")
    await client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    print(f"{'rules':>6} | {'compile (baseline)':>18} | {'checker diags':>20} | {'lint findings':>20}")
    with tempfile.TemporaryDirectory() as directory:
        for rules in sizes:
            checker, linted = await measure(client, times, Path(directory), rules)
            base = baseline(rules)
            print(f"{rules:>6} | {base * 1000:>15.0f} ms | {statistics.median(checker) * 1000:>7.0f} ms "
                  f"({min(checker) * 1000:.0f}-{max(checker) * 1000:.0f}) | {statistics.median(linted) * 1000:>7.0f} ms "
                  f"({min(linted) * 1000:.0f}-{max(linted) * 1000:.0f})")
    await client.shutdown_session()
    print(f"\nmedian (min-max) over {CHANGES} changes, from sending the change to each publication.")


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [200, 1000]))
