"""The VS Code extension folder: manifest, language configuration, the client
entry point, and that `vsce` packages it."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

from editor_support import EDITORS, REPO

VSCODE = EDITORS / "vscode"


def _manifest() -> dict:
    return json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))


def test_manifest_contributions():
    manifest = _manifest()
    [language] = manifest["contributes"]["languages"]
    assert language["id"] == "route"
    assert language["extensions"] == [".route"]
    assert (VSCODE / language["configuration"]).is_file()
    [grammar] = manifest["contributes"]["grammars"]
    assert grammar == {"language": "route", "scopeName": "source.route", "path": "./syntaxes/route.tmLanguage.json"}
    assert (VSCODE / grammar["path"]).is_file()
    [snippets] = manifest["contributes"]["snippets"]
    assert snippets["language"] == "route" and (VSCODE / snippets["path"]).is_file()
    assert manifest["main"] == "./extension.js" and (VSCODE / "extension.js").is_file()
    assert "vscode-languageclient" in manifest["dependencies"]
    assert (VSCODE / "package-lock.json").is_file()


def test_language_configuration():
    config = json.loads((VSCODE / "language-configuration.json").read_text(encoding="utf-8"))
    assert config["comments"] == {"lineComment": "#"}
    assert ["{", "}"] in config["brackets"]
    assert {"open": "\"", "close": "\"", "notIn": ["string", "comment"]} in config["autoClosingPairs"]
    import re

    increase = re.compile(config["indentationRules"]["increaseIndentPattern"])
    decrease = re.compile(config["indentationRules"]["decreaseIndentPattern"])
    assert increase.search("rule a priority 1 {")
    assert increase.search("split sticky by user.id {  # comment")
    assert not increase.search('label "{"')
    assert not increase.search("rule a { route t }")
    assert decrease.search("    }")


def _node_with_stub(script: str, server: str = "no-such-routelang") -> subprocess.CompletedProcess:
    """Run `script` in node with a stub `vscode` module (the real one exists only inside VS Code)."""
    node = shutil.which("node")
    assert node, "node is required"
    prelude = """
const Module = require("module");
const messages = [];
const stub = {
  workspace: {
    getConfiguration: () => ({ get: (key, dflt) => (key === "server.path" ? process.env.RL_SERVER : dflt) }),
    createFileSystemWatcher: () => ({ dispose() {} }),
  },
  window: { showInformationMessage: (m) => messages.push(m) },
};
const clients = [];
class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    clients.push({ id, serverOptions, clientOptions: { documentSelector: clientOptions.documentSelector } });
  }
  start() { clients[clients.length - 1].started = true; return Promise.resolve(); }
  stop() { return Promise.resolve(); }
  dispose() {}
}
const clientStub = { LanguageClient, TransportKind: { stdio: 0 } };
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === "vscode") return stub;
  if (request === "vscode-languageclient/node") return clientStub;
  return load.apply(this, arguments);
};
"""
    return subprocess.run([node, "-e", prelude + script], cwd=VSCODE, capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "RL_SERVER": server})


def test_extension_finds_the_server_on_path():
    proc = _node_with_stub("""
const ext = require("./extension.js");
const found = ext.findExecutable("node");
const missing = ext.findExecutable("no-such-routelang-binary");
ext.activate({ subscriptions: [] }).then(() => {
  console.log(JSON.stringify({ found, missing, messages }));
});
""")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["found"] and out["found"].endswith("node")
    assert out["missing"] is None
    # routelang is not on this PATH: the extension says so instead of failing
    assert len(out["messages"]) == 1 and "routelang" in out["messages"][0]


def test_extension_starts_routelang_lsp(tmp_path):
    fake = tmp_path / "routelang"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    fake.chmod(0o755)
    proc = _node_with_stub("""
const ext = require("./extension.js");
ext.activate({ subscriptions: [] }).then(() => console.log(JSON.stringify({ clients, messages })));
""", server=str(fake))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [client] = out["clients"]
    assert client["started"] is True
    assert client["serverOptions"]["run"]["command"] == str(fake)
    assert client["serverOptions"]["run"]["args"] == ["lsp"]
    assert {"scheme": "file", "language": "route"} in client["clientOptions"]["documentSelector"]
    assert out["messages"] == []


def test_vsce_packages_the_extension(tmp_path):
    npx = shutil.which("npx")
    assert npx, "npx is required"
    assert (VSCODE / "node_modules" / "vscode-languageclient").is_dir(), (
        f"run `npm ci --prefix {VSCODE.relative_to(REPO)}` first"
    )
    out = tmp_path / "routelang.vsix"
    proc = subprocess.run(
        [npx, "--yes", "@vscode/vsce", "package", "--allow-missing-repository", "--out", str(out)],
        cwd=VSCODE, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = set(zipfile.ZipFile(out).namelist())
    for required in ("extension/package.json", "extension/extension.js", "extension/language-configuration.json",
                     "extension/syntaxes/route.tmLanguage.json", "extension/snippets/route.json",
                     "extension/node_modules/vscode-languageclient/package.json"):
        assert required in names, required
    assert not any(n.endswith(".vsix") for n in names)
