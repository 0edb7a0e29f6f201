#!/usr/bin/env bash
# The main job: installs, starts the Temporal dev server (Web UI on 127.0.0.1:8233) and runs a
# whole migration of the example plan as a dry run. The server keeps running afterwards so the
# migration can be inspected in the Web UI; `bash scripts/temporal-dev.sh stop` stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/temporal-dev.sh start
node dist/src/demo.js "${1:-examples/pragmatismo.yaml}" --dry-run
