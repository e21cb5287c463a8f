#!/usr/bin/env node
// Tokenize routelang text with the TextMate engine VS Code uses
// (vscode-textmate + vscode-oniguruma).
//
// Input (stdin, JSON):  {"grammar": "<path to route.tmLanguage.json>",
//                        "documents": {"<name>": "<text>", ...}}
// Output (stdout, JSON): {"<name>": [[{"start", "end", "text", "scopes"}, ...] per line]}
"use strict";

const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

function readStdin() {
  return fs.readFileSync(0, "utf8");
}

async function main() {
  const request = JSON.parse(readStdin());
  const wasmPath = path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm");
  const wasm = fs.readFileSync(wasmPath).buffer;
  await oniguruma.loadWASM(wasm);

  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== "source.route") return null;
      const text = fs.readFileSync(request.grammar, "utf8");
      return vsctm.parseRawGrammar(text, request.grammar);
    },
  });
  const grammar = await registry.loadGrammar("source.route");
  if (!grammar) throw new Error("could not load source.route");

  const out = {};
  for (const [name, text] of Object.entries(request.documents)) {
    let ruleStack = vsctm.INITIAL;
    const lines = [];
    for (const line of text.split("\n")) {
      const result = grammar.tokenizeLine(line, ruleStack);
      lines.push(
        result.tokens.map((t) => ({
          start: t.startIndex,
          end: Math.min(t.endIndex, line.length),
          text: line.substring(t.startIndex, t.endIndex),
          scopes: t.scopes,
        }))
      );
      ruleStack = result.ruleStack;
    }
    out[name] = lines;
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(1);
});
