#!/usr/bin/env bash
# The lab's ACME CA from the outside: plays a Let's Encrypt rate limit and tells where things are.
#   bash lab/acme.sh rate-limit SECONDS   # new orders get 429 rateLimited until now+SECONDS
#   bash lab/acme.sh rate-limit off       # no limit (the window file emptied)
#   bash lab/acme.sh root                 # prints the path of pebble's current root (root.pem)
#   bash lab/acme.sh status               # pebble, the front, the window
# The window is the one line of $GBO_LAB_ROOT/acme/rate-limited-until (RFC3339 UTC); the front
# reads it at every request, so writing it is all a test has to do too. See docs/lab.md.
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"
. "$LAB_DIR/acme-ca.sh"
[ -d "$ACME_DIR" ] || die "acme: $ACME_DIR absent: the lab is down (lab:up)"

case "${1:-}" in
  rate-limit)
    arg=${2:-}
    if [ "$arg" = off ]; then
      : > "$ACME_WINDOW_FILE"
      log "acme: no rate limit"
    elif [[ "$arg" =~ ^[0-9]+$ ]] && [ "$arg" -gt 0 ]; then
      # Written whole and renamed: the front never reads half a line.
      date -u -d "@$(( $(date +%s) + arg ))" +%Y-%m-%dT%H:%M:%SZ > "$ACME_WINDOW_FILE.tmp"
      mv "$ACME_WINDOW_FILE.tmp" "$ACME_WINDOW_FILE"
      log "acme: new orders rate-limited until $(cat "$ACME_WINDOW_FILE")"
    else
      die "acme rate-limit: a number of seconds (> 0) or 'off', not '$arg'"
    fi
    ;;
  root)
    [ -s "$ACME_DIR/root.pem" ] || die "acme: $ACME_DIR/root.pem absent"
    echo "$ACME_DIR/root.pem"
    ;;
  status)
    rc=0
    if acme_alive "$ACME_DIR/pebble.pid"; then echo "pebble  up (pid $(cat "$ACME_DIR/pebble.pid")) https://$PEBBLE_ADDR:$PEBBLE_PORT/dir, management :$PEBBLE_MGMT_PORT, VA DNS $DST_ADDR:53, log $ACME_DIR/pebble.log"
    else echo "pebble  DOWN"; rc=1; fi
    if acme_alive "$ACME_DIR/front.pid" && acme_directory_ok; then echo "front   up (pid $(cat "$ACME_DIR/front.pid")) $ACME_DIRECTORY, log $ACME_DIR/front.log"
    else echo "front   DOWN"; rc=1; fi
    echo "CA      $ACME_DIR/lab-ca.pem (listener certificate of pebble and the front), issued certificates chain to $ACME_DIR/root.pem"
    w=$(acme_window)
    echo "window  ${w:+rate-limited until $w}${w:-no rate limit} ($ACME_WINDOW_FILE)"
    exit "$rc"
    ;;
  *) echo "usage: $0 rate-limit SECONDS|off | root | status" >&2; exit 2 ;;
esac
