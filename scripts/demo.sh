#!/usr/bin/env bash
# The main job: installs, starts the Temporal dev server (Web UI on 127.0.0.1:8233) and migrates
# the lab tenant for real, from the lab's LXD host to its Incus host (as root: the lab needs
# network namespaces, LXD and Incus). Without root, it runs the example tenant's dry run instead.
# The server keeps running afterwards so the migration can be inspected in the Web UI;
# `bash scripts/temporal-dev.sh stop` stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/temporal-dev.sh start
if [ "$(id -u)" = 0 ]; then
  # lab:up rebuilds the seeded tenant when a previous migration moved it away.
  bash lab/up.sh
  # The lab plan's keys are file:$GBO_LAB_ROOT/ssh/...: the demo's worker resolves secrets from there only.
  export GBO_SECRETS_DIRS="${GBO_LAB_ROOT:-/var/lib/gbo-lab}/ssh"
  # Certificates come from the lab's ACME CA; the gates are approved as "demo" once the matrix is green.
  node dist/src/demo.js "${GBO_LAB_ROOT:-/var/lib/gbo-lab}/plan.yaml" --approve-as demo
else
  echo "not root: the lab needs root, so this is the dry run of examples/pragmatismo.yaml"
  node dist/src/demo.js examples/pragmatismo.yaml --dry-run
fi
