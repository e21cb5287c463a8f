// routelang for VS Code: starts `routelang lsp` (when it can be found) as a
// language server over stdio. Highlighting, snippets and the language
// configuration work without it.
"use strict";

const fs = require("fs");
const path = require("path");
const vscode = require("vscode");

let client = null;

/** Resolve `command` the way a shell would: absolute/relative paths as they are, bare names on PATH. */
function findExecutable(command) {
  const isFile = (p) => {
    try {
      return fs.statSync(p).isFile();
    } catch (_err) {
      return false;
    }
  };
  if (command.includes("/") || command.includes("\\")) {
    return isFile(command) ? command : null;
  }
  const exts = process.platform === "win32"
    ? (process.env.PATHEXT || ".EXE;.CMD;.BAT").split(";").concat([""])
    : [""];
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, command + ext);
      if (isFile(candidate)) return candidate;
    }
  }
  return null;
}

async function activate(context) {
  const config = vscode.workspace.getConfiguration("routelang");
  if (!config.get("server.enabled", true)) return;

  const command = findExecutable(config.get("server.path", "routelang"));
  if (!command) {
    vscode.window.showInformationMessage(
      "routelang: `routelang` was not found on PATH; highlighting works, but diagnostics, " +
        "hover and formatting need `pip install routelang` (or set routelang.server.path)."
    );
    return;
  }

  // Loaded only when there is a server to talk to.
  const { LanguageClient, TransportKind } = require("vscode-languageclient/node");
  const serverOptions = {
    run: { command, args: ["lsp"], transport: TransportKind.stdio },
    debug: { command, args: ["lsp"], transport: TransportKind.stdio },
  };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "route" }, { scheme: "untitled", language: "route" }],
    synchronize: {
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.route"),
    },
  };
  client = new LanguageClient("routelang", "routelang language server", serverOptions, clientOptions);
  context.subscriptions.push(client);
  await client.start();
}

async function deactivate() {
  if (client) {
    await client.stop();
    client = null;
  }
}

module.exports = { activate, deactivate, findExecutable };
