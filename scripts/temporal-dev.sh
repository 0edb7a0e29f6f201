#!/usr/bin/env bash
# Starts the Temporal dev server with its Web UI, SQLite in .data/ (workflows survive a restart)
# and the project's search attributes. Idempotent: a server already answering is left alone.
#   scripts/temporal-dev.sh [start|stop|status]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${TEMPORAL_PORT:-7233}
ui_port=${TEMPORAL_UI_PORT:-8233}
data="$root/.data"
pidfile="$data/temporal.pid"
temporal=$(bash "$root/scripts/temporal-cli.sh")

healthy() { "$temporal" operator cluster health --address "127.0.0.1:$port" >/dev/null 2>&1; }

case "${1:-start}" in
  start)
    if healthy; then echo "Temporal dev server already up on 127.0.0.1:$port (Web UI http://127.0.0.1:$ui_port)"; exit 0; fi
    mkdir -p "$data"
    nohup "$temporal" server start-dev \
      --ip 127.0.0.1 --port "$port" --ui-port "$ui_port" \
      --db-filename "$data/temporal.sqlite" \
      --search-attribute GboTenant=Keyword --search-attribute GboPhase=Keyword \
      --log-level warn >"$data/temporal.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 120); do
      if healthy; then echo "Temporal dev server up on 127.0.0.1:$port, Web UI http://127.0.0.1:$ui_port"; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "Temporal dev server exited; see $data/temporal.log" >&2; tail -n 20 "$data/temporal.log" >&2; exit 1; }
      sleep 0.5
    done
    echo "Temporal dev server did not become healthy in 60 s; see $data/temporal.log" >&2; exit 1
    ;;
  stop)
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
      for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
      echo "Temporal dev server stopped"
    fi
    rm -f "$pidfile"
    ;;
  status)
    if healthy; then echo "up: 127.0.0.1:$port, Web UI http://127.0.0.1:$ui_port"; else echo "down"; exit 1; fi
    ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
