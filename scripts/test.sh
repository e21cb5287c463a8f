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
# The editor tests also need a headless Vim and Neovim (the Neovim 0.7 snippet of docs/editors.md is run);
# the A/B report's page is looked at in headless Chromium.
for needed in vim:vim-nox nvim:neovim chromium:chromium; do
    command="${needed%%:*}" package="${needed#*:}"
    if ! command -v "$command" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq "$package" >/dev/null
        else
            echo "scripts/test.sh: $command is needed by the tests (apt-get install $package)" >&2
            exit 2
        fi
    fi
done

python -m pytest "$@"
