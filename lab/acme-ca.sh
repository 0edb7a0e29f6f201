# The lab's ACME CA (sourced by up.sh, down.sh, status.sh and acme.sh after lib.sh).
#   lab CA (openssl)  $ACME_DIR/lab-ca.pem (+ lab-ca.key): signs the listener certificate
#                     $ACME_DIR/listener.pem (+ .key, IP SANs 127.0.0.1 and $SRC_ADDR), used by
#                     pebble's two HTTPS listeners and by the front; Caddy trusts it (acme_ca_root).
#   pebble            Debian's, on $PEBBLE_ADDR:$PEBBLE_PORT (ACME) and :$PEBBLE_MGMT_PORT
#                     (management). Real validation: its VA resolves through the destination host
#                     ($DST_ADDR:53) and connects to ports 80/443 of the answer.
#   $ACME_DIR/root.pem  pebble's root of this start (pebble makes a new one at every start): what
#                     the migration worker trusts when it checks served certificates.
#   the front         lab/acme-front.mjs on $ACME_FRONT_ADDR:$ACME_FRONT_PORT, forwarding to pebble
#                     and answering new-order with 429 rateLimited while $ACME_WINDOW_FILE holds a
#                     future RFC3339 UTC time.

acme_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The lab CA and the listener certificate (EC P-256: fast, and every client here takes it).
acme_make_ca() {
  mkdir -p "$ACME_DIR"
  chmod 755 "$ACME_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=gbo-lab ACME CA $(date -u +%FT%TZ)" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$ACME_DIR/lab-ca.key" -out "$ACME_DIR/lab-ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=gbo-lab ACME listener" -keyout "$ACME_DIR/listener.key" -out "$ACME_DIR/listener.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$ACME_FRONT_ADDR" > "$ACME_DIR/listener.ext"
  openssl x509 -req -in "$ACME_DIR/listener.csr" -CA "$ACME_DIR/lab-ca.pem" -CAkey "$ACME_DIR/lab-ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 30 -extfile "$ACME_DIR/listener.ext" \
    -out "$ACME_DIR/listener.pem" 2>/dev/null
  rm -f "$ACME_DIR/listener.csr" "$ACME_DIR/listener.ext"
  chmod 600 "$ACME_DIR/lab-ca.key" "$ACME_DIR/listener.key"
  openssl verify -CAfile "$ACME_DIR/lab-ca.pem" "$ACME_DIR/listener.pem" >/dev/null
}

acme_pebble_config() {
  cat <<JSON
{
  "pebble": {
    "listenAddress": "$PEBBLE_ADDR:$PEBBLE_PORT",
    "managementListenAddress": "$PEBBLE_ADDR:$PEBBLE_MGMT_PORT",
    "certificate": "$ACME_DIR/listener.pem",
    "privateKey": "$ACME_DIR/listener.key",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
}

# pebble, then the front; waits until both answer and writes root.pem. Needs $ACME_FRONT_ADDR
# (the veth) to exist.
acme_start() {
  local i
  acme_pebble_config > "$ACME_DIR/pebble-config.json"
  # PEBBLE_VA_NOSLEEP: no random 0-15 s sleep before each validation. PEBBLE_WFE_NONCEREJECT=0:
  # no 5 % of valid nonces rejected (Caddy retries them, but the logs would show badNonce noise).
  # PEBBLE_VA_ALWAYS_VALID is removed from the environment on purpose: validation must be real.
  setsid env -u PEBBLE_VA_ALWAYS_VALID PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$ACME_DIR/pebble-config.json" -dnsserver "$DST_ADDR:53" \
    </dev/null >>"$ACME_DIR/pebble.log" 2>&1 &
  echo $! > "$ACME_DIR/pebble.pid"
  for i in $(seq 100); do
    curl -fsS -m 2 --cacert "$ACME_DIR/lab-ca.pem" -o /dev/null "https://$PEBBLE_ADDR:$PEBBLE_PORT/dir" 2>/dev/null && break
    acme_alive "$ACME_DIR/pebble.pid" || die "pebble exited (see $ACME_DIR/pebble.log)"
    [ "$i" -lt 100 ] || die "pebble does not answer on $PEBBLE_ADDR:$PEBBLE_PORT (see $ACME_DIR/pebble.log)"
    sleep 0.1
  done
  # This start's root (and intermediate): certificates pebble issues chain up to it.
  curl -fsS -m 5 --cacert "$ACME_DIR/lab-ca.pem" -o "$ACME_DIR/root.pem.tmp" "https://$PEBBLE_ADDR:$PEBBLE_MGMT_PORT/roots/0"
  curl -fsS -m 5 --cacert "$ACME_DIR/lab-ca.pem" -o "$ACME_DIR/intermediate.pem.tmp" "https://$PEBBLE_ADDR:$PEBBLE_MGMT_PORT/intermediates/0"
  openssl verify -CAfile "$ACME_DIR/root.pem.tmp" "$ACME_DIR/intermediate.pem.tmp" >/dev/null \
    || die "pebble's intermediate does not chain to its root"
  mv "$ACME_DIR/root.pem.tmp" "$ACME_DIR/root.pem"
  mv "$ACME_DIR/intermediate.pem.tmp" "$ACME_DIR/intermediate.pem"
  chmod 644 "$ACME_DIR/root.pem" "$ACME_DIR/intermediate.pem" "$ACME_DIR/lab-ca.pem"

  : > "$ACME_WINDOW_FILE"   # no rate limit at first
  setsid node "$LAB_DIR/acme-front.mjs" --listen "$ACME_FRONT_ADDR:$ACME_FRONT_PORT" \
    --cert "$ACME_DIR/listener.pem" --key "$ACME_DIR/listener.key" \
    --upstream "https://$PEBBLE_ADDR:$PEBBLE_PORT" --upstream-ca "$ACME_DIR/lab-ca.pem" \
    --window-file "$ACME_WINDOW_FILE" </dev/null >>"$ACME_DIR/front.log" 2>&1 &
  echo $! > "$ACME_DIR/front.pid"
  for i in $(seq 100); do
    acme_directory_ok && break
    acme_alive "$ACME_DIR/front.pid" || die "the ACME front exited (see $ACME_DIR/front.log)"
    [ "$i" -lt 100 ] || die "the ACME front does not answer on $ACME_DIRECTORY (see $ACME_DIR/front.log)"
    sleep 0.1
  done
}

# The directory through the front, trusted with the lab CA, with URLs that point at the front.
acme_directory_ok() {
  curl -fsS -m 3 --cacert "$ACME_DIR/lab-ca.pem" "$ACME_DIRECTORY" 2>/dev/null \
    | grep -qF "\"newOrder\": \"https://$ACME_FRONT_ADDR:$ACME_FRONT_PORT/"
}

# The window's end (RFC3339 UTC) if it is active now, else nothing.
acme_window() {
  local end
  end=$(tr -d '[:space:]' 2>/dev/null < "$ACME_WINDOW_FILE") || return 0
  [ -n "$end" ] || return 0
  [ "$(date -u -d "$end" +%s 2>/dev/null || echo 0)" -gt "$(date +%s)" ] && echo "$end"
  return 0
}

# An ACME account in a Caddy storage before that Caddy first starts (a production proxy has had
# one for years). Why: Caddy 2.6.2 with an empty storage and many names registers one account per
# name concurrently and writes them all to the same file; seen here with the proxy's 26 names:
# 26 registrations and a default.json with stray bytes at the end ("}e\"\n}"), after which every
# attempt fails with "getting ACME account: invalid character 'e' after top-level value", on the
# source and, the storage being copied, on the destination too. So a throwaway Caddy with ONE
# name registers the account (written in Caddy's own format) and is stopped as soon as the
# account is stored, before its order matters. It binds loopback high ports only, admin off.
acme_register_account() { # storage root (the proxy's data/caddy on the host)
  local storage=$1 work="$ACME_DIR/account" pid i acct
  mkdir -p "$work/home"
  cat > "$work/Caddyfile" <<CADDY
{
	admin off
	storage file_system {
		root $storage
	}
	acme_ca $ACME_DIRECTORY
	acme_ca_root $ACME_DIR/lab-ca.pem
	skip_install_trust
	http_port 18080
	https_port 18443
	log {
		output file $work/caddy.log
		format json
	}
}

https://account.$GBO_LAB_ZONE {
	bind 127.0.0.1
	respond "account registration only"
}
CADDY
  HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_DATA_HOME="$work/home/.local/share" \
    setsid caddy run --config "$work/Caddyfile" --adapter caddyfile </dev/null >>"$work/caddy.out" 2>&1 &
  pid=$!
  acct="$storage/acme/$ACME_FRONT_ADDR-$ACME_FRONT_PORT-dir/users/default"
  for i in $(seq 100); do
    if [ -s "$acct/default.key" ] && node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$acct/default.json" 2>/dev/null \
       && grep -q '"status": "valid"' "$acct/default.json"; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || die "the account registration's Caddy exited (see $work/caddy.out, $work/caddy.log)"
    [ "$i" -lt 100 ] || { kill "$pid"; die "no ACME account in $acct after 10 s (see $work/caddy.log)"; }
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Only the account stays: no half-done certificate state of the throwaway name.
  rm -rf "$storage/certificates" "$storage/locks"
}
