"""The Neovim 0.7-0.9 snippet of docs/editors.md, run as written in headless
Neovim: the language server attaches and the buffer gets its diagnostics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from editor_support import REPO

CHECK = """
local done = vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 100)
local clients, codes = {}, {}
for _, client in pairs(vim.lsp.buf_get_clients(0)) do table.insert(clients, client.name) end
for _, d in ipairs(vim.diagnostic.get(0)) do table.insert(codes, tostring(d.code)) end
local out = io.open(os.getenv("OUT"), "w")
out:write(vim.fn.json_encode({ done = done, filetype = vim.bo.filetype, clients = clients, codes = codes }))
out:close()
vim.cmd("qa!")
"""


def start_client_snippet() -> str:
    """The docs' Lua block that uses vim.lsp.start_client."""
    blocks = re.findall(r"```lua\n(.*?)```", (REPO / "docs" / "editors.md").read_text(encoding="utf-8"), re.DOTALL)
    [snippet] = [b for b in blocks if "vim.lsp.start_client" in b]
    return snippet


def test_the_neovim_07_snippet_attaches_and_shows_diagnostics(tmp_path):
    nvim = shutil.which("nvim")
    assert nvim, "nvim is required (apt-get install neovim)"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    routelang = bin_dir / "routelang"  # the `routelang` of this checkout, as `pip install` would put on PATH
    routelang.write_text(f'#!/bin/sh\nexec {sys.executable} -m routelang "$@"\n')
    routelang.chmod(0o755)
    (tmp_path / "init.lua").write_text(start_client_snippet())
    (tmp_path / "check.lua").write_text(CHECK)
    route = tmp_path / "bad.route"
    route.write_text('router bad\nimport std.providers\nrule a { route smal }\n')
    out = tmp_path / "out.json"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(out), "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.run([nvim, "--headless", "-i", "NONE", "-u", str(tmp_path / "init.lua"), str(route),
                           "-c", f"luafile {tmp_path / 'check.lua'}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), f"nvim wrote nothing (rc={proc.returncode}): {proc.stdout}{proc.stderr}"
    result = json.loads(out.read_text())
    assert result["filetype"] == "route"
    assert result["clients"] == ["routelang"]
    assert result["done"] and "RL101" in result["codes"], result
