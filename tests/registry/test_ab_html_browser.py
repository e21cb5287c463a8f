"""The A/B report's page as a browser shows it: headless Chromium takes a
screenshot, and a probe (added to a copy of the page: the page itself has no
script) measures every text of every chart against its chart, the viewport
and the other texts, and the page against the viewport's width."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_ab_report import gateway_rows, run

from routelang.cli import Exit
from routelang.registry.history import insert

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
WIDTH = 1280
TOLERANCE_PX = 0.5

# Runs once the page is laid out; writes its findings into the page as JSON (read back by --dump-dom).
PROBE = """
<script>
function hidden(node, svg) {
  for (; node && node !== svg; node = node.parentNode) {
    if (node.getAttribute('opacity') === '0' || node.getAttribute('display') === 'none') return true;
  }
  return false;
}
const found = {texts: 0, clipped: [], overlapping: [], viewport: document.documentElement.clientWidth,
               page: document.documentElement.scrollWidth, charts: []};
for (const svg of document.querySelectorAll('svg')) {
  const chart = svg.getBoundingClientRect();
  found.charts.push({metric: svg.getAttribute('data-metric'), width: chart.width});
  const boxes = [];
  for (const text of svg.querySelectorAll('text')) {
    if (!text.textContent.trim() || hidden(text, svg)) continue;
    const r = text.getBoundingClientRect();
    found.texts++;
    boxes.push([text.textContent, r]);
    if (r.left < chart.left - TOL || r.right > chart.right + TOL || r.top < chart.top - TOL ||
        r.bottom > chart.bottom + TOL || r.right > found.viewport + TOL) {
      found.clipped.push({text: text.textContent, box: [r.left, r.top, r.right, r.bottom],
                          chart: [chart.left, chart.top, chart.right, chart.bottom]});
    }
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, ra] = boxes[i], [b, rb] = boxes[j];
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) found.overlapping.push([a, b]);
    }
  }
}
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify(found);
document.body.appendChild(out);
</script>
"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", f"--window-size={WIDTH},2400", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def page(deployed, tmp_path) -> Path:
    """The html report of a two-arm experiment whose variant fails over now and then, with long labels."""
    insert(deployed.conn, gateway_rows({"control": (500, 0.95, 200, 30), "variant-with-a-long-label": (500, 0.85,
                                                                                                         170, 60)}))
    path = tmp_path / "report.html"
    assert run("ab", "chat", "--format", "html", "-o", path).exit_code == Exit.OK
    return path


def test_no_text_of_the_page_is_clipped_or_overlaps_another(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE.replace("TOL", str(TOLERANCE_PX)) + "</body>"))
    done = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert match, done.stderr[-2000:]
    found = json.loads(html.unescape(match[1]))
    assert found["texts"] > 40                        # the charts' texts were measured
    assert found["clipped"] == []
    assert found["overlapping"] == []
    assert found["page"] <= found["viewport"]         # nothing runs off the page's right edge
    # The charts take the width of the page's text, each arm's histogram beside the other's.
    assert [c["metric"] for c in found["charts"]] == ["latency", "success_rate"]
    assert all(c["width"] > 0.8 * min(found["viewport"], 1100) for c in found["charts"])


def test_a_screenshot_of_the_page(page, tmp_path):
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, 2400)
    assert len(data) > 50_000     # a page of text and charts, not a blank one
