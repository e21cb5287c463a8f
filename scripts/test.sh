#!/usr/bin/env bash
# Installs what the test suite needs, then runs it. Used by the README and by .ci/run.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet -e '.[test]'

# The editor tests drive VS Code's own tokenizer (node) and a headless Vim.
for dir in editors/test-harness editors/vscode; do
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
done
if ! command -v vim >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq vim-nox >/dev/null
    else
        echo "scripts/test.sh: vim is needed for the editor tests (apt-get install vim)" >&2
        exit 2
    fi
fi
if ! command -v nvim >/dev/null 2>&1; then  # the Neovim 0.7 snippet of docs/editors.md is run
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends neovim >/dev/null
    else
        echo "scripts/test.sh: nvim is needed for the editor tests (apt-get install neovim)" >&2
        exit 2
    fi
fi

python -m pytest "$@"
