#!/usr/bin/env bash
# The full fault suite (`npm run faults`): a whole lab migration during which the worker is
# SIGKILLed at 20+ seeded points over every phase, the Temporal server is restarted once on the
# same database and the destination→source link is cut for 20 s during the data transfer; then
# every file, every destructive step, the bytes re-sent and the stall after each kill are reported.
#
#   bash scripts/faults.sh [--seed N] [--kills N] [--data-mb N]
#
# Defaults: a random seed (printed first; pass it back to replay the same schedule), 24 kills,
# 2048 MB of tenant data. Needs root (the lab). Brings the lab up with that data size (a lab with
# another size is rebuilt), builds, runs the suite; the report goes to .data/faults/<seed>.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seed="${GBO_FAULT_SEED:-}"
kills=24
data_mb=2048
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --kills) kills="${2:?--kills needs a number}"; shift 2 ;;
    --data-mb) data_mb="${2:?--data-mb needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (usage: scripts/faults.sh [--seed N] [--kills N] [--data-mb N])" >&2; exit 2 ;;
  esac
done
for v in "$kills" "$data_mb" ${seed:+"$seed"}; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "expected a number, got: $v" >&2; exit 2; }
done
[ -n "$seed" ] || seed=$(( (RANDOM << 15 | RANDOM) + 1 ))
echo "fault suite seed $seed (kills $kills, data $data_mb MB)"
[ "$(id -u)" = 0 ] || { echo "the fault suite needs root (the lab: network namespaces, LXD, Incus)" >&2; exit 1; }

started=$(date +%s)
bash scripts/setup.sh
GBO_LAB_DATA_MB="$data_mb" bash lab/up.sh
rc=0
node dist/test/faults/main.js --seed "$seed" --kills "$kills" || rc=$?
echo "faults: seed $seed, $kills kills planned, $data_mb MB, $(( $(date +%s) - started )) s in all (lab up and build included): $([ "$rc" = 0 ] && echo passed || echo FAILED)"
exit "$rc"
