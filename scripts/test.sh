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
# Programs the tests run, from Debian's packages: a headless Vim and Neovim (the editor tests; the Neovim 0.7
# snippet of docs/editors.md is run), headless Chromium (the A/B report's page), a real redis-server (shared
# state) and PostgreSQL 15 (the registry on Postgres; tests/services.py starts both on free loopback ports).
missing=()
for needed in vim:vim-nox nvim:neovim chromium:chromium redis-server:redis-server \
              /usr/lib/postgresql/15/bin/initdb:postgresql-15; do
    program="${needed%%:*}" package="${needed#*:}"
    command -v "$program" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "scripts/test.sh: the tests need these Debian packages: ${missing[*]} (apt-get install them)" >&2
        exit 2
    fi
fi

python -m pytest "$@"
