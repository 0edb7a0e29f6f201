/**
 * The scripts of the file-editing service fixes. Each runs inside the container as
 * `sh -c FILE_EDIT <program> <mode> <file> NAME=value... [NAME]`: the awk program computes the new
 * file from the old one; values reach awk through ENVIRON (never `-v`, never a regex or a `sed`
 * replacement), so every character is literal. A bare NAME (no `=`) is read from stdin: a secret
 * the worker resolved, never in the command. Nothing here prints a value.
 *
 * Exit codes of the awk programs: 0 the file is already as planned, 10 it changes, 3 refused (the
 * reason on stderr). `check` mode exits 0 only when nothing would change; `apply` writes the new
 * text over a `cp -p` copy (owner and mode kept) and renames it into place, or leaves the file
 * untouched when nothing changes. POSIX sh and awk: busybox and GNU alike.
 */

export const FILE_EDIT = [
  'prog=$1 mode=$2 f=$3; shift 3',
  'for a in "$@"; do case $a in',
  '*=*) export "$a" ;;',
  '*) v=; IFS= read -r v || [ -n "$v" ] || { echo "gbo: $f: no value on stdin; nothing changed" >&2; exit 2; }',
  'if IFS= read -r x || [ -n "$x" ]; then echo "gbo: $f: the value on stdin is more than one line; nothing changed" >&2; exit 2; fi',
  'export "$a=$v" ;;',
  'esac; done',
  '[ -f "$f" ] || { echo "gbo: $f: no such file in the container; nothing changed" >&2; exit 2; }',
  'f=$(readlink -f "$f") || exit 2; export GBO_F="$f"',
  'if [ "$mode" = check ]; then awk "$prog" "$f" >/dev/null 2>&1; exit $?; fi',
  't="$f.gbo-new"; cp -p "$f" "$t" || exit 2',
  'awk "$prog" "$f" > "$t"; rc=$?',
  'case $rc in 0) rm -f "$t"; echo "$f: already as planned" ;; 10) mv -f "$t" "$f" && echo "$f: changed" ;; *) rm -f "$t"; exit "$rc" ;; esac',
].join('\n');

const COMMON_AWK = String.raw`
function die(m) { print "gbo: " ENVIRON["GBO_F"] ": " m "; nothing changed" | "cat 1>&2"; close("cat 1>&2"); bad = 1; exit 3 }
{ L[++n] = $0 }
`;

/**
 * KEY=value in an env file (`KEY=v`, `KEY="v"`, `KEY='v'`, `export KEY=v`) or a unit's
 * `Environment=KEY=v` / `Environment="KEY=v"` (GBO_U=1). GBO_P=whole sets the whole value to GBO_V;
 * GBO_P=url-host replaces only the host of the URL the key holds with GBO_V. Every line that
 * assigns the key changes; an absent key is appended (to the [Service] section of a unit).
 * Encoding as found: double quotes escape `\` and `"`; single quotes cannot hold `'` (refused);
 * units double `%` (specifiers) and escape as systemd unquotes, and a value with blanks is quoted.
 */
export const ENV_AWK =
  COMMON_AWK +
  String.raw`
function esc(s, chars,   o, i, c) { o = ""; for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); o = o (index(chars, c) ? "\\" c : c) } return o }
function pct(s,   o, i, c) { o = ""; for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); o = o (c == "%" ? "%%" : c) } return o }
function parse(line,   r, lead, i, c, e, qb) {
  match(line, /^[ \t]*/); lead = substr(line, 1, RLENGTH); r = substr(line, RLENGTH + 1)
  if (U) { if (substr(r, 1, 12) != "Environment=") return 0; lead = lead "Environment="; r = substr(r, 13) }
  else if (match(r, /^export[ \t]+/)) { lead = lead substr(r, 1, RLENGTH); r = substr(r, RLENGTH + 1) }
  Q = ""; QB = 0
  if (U && (substr(r, 1, 1) == "\"" || substr(r, 1, 1) == "'")) { Q = substr(r, 1, 1); QB = 1; r = substr(r, 2) }
  if (substr(r, 1, length(K) + 1) != K "=") return 0
  r = substr(r, length(K) + 2)
  if (Q == "" && (substr(r, 1, 1) == "\"" || substr(r, 1, 1) == "'")) { Q = substr(r, 1, 1); r = substr(r, 2) }
  LEAD = lead
  if (Q != "") {
    e = 0
    for (i = 1; i <= length(r); i++) { c = substr(r, i, 1); if (c == "\\" && (U || Q == "\"")) { i++; continue } if (c == Q) { e = i; break } }
    if (!e) die(K " has an unterminated quote")
    RAW = substr(r, 1, e - 1); POST = substr(r, e)
  } else if (U) {
    e = length(r) + 1
    for (i = 1; i <= length(r); i++) { c = substr(r, i, 1); if (c == "\\") { i++; continue } if (c == " " || c == "\t") { e = i; break } }
    RAW = substr(r, 1, e - 1); POST = substr(r, e)
  } else { RAW = r; POST = "" }
  return 1
}
function rebuild(raw) {
  return QB ? LEAD Q K "=" raw POST : LEAD K "=" Q raw POST
}
function enc(v) {
  if (U) {
    v = pct(v)
    if (Q == "" && v ~ /[ \t]/) { Q = "\""; QB = 1; POST = "\"" POST }
    return Q == "" ? esc(v, "\\\"'") : esc(v, "\\" Q)
  }
  if (Q == "\"") return esc(v, "\\\"")
  if (Q == "'" && index(v, "'")) die("the value holds a ' and the file quotes " K " with '...'")
  return v
}
function urlhost(raw,   i, pre, rest, e, j, c, auth, tail, a, ui, hp, port, host) {
  i = index(raw, "://"); if (!i) die("the value of " K " is not a URL with a host")
  pre = substr(raw, 1, i + 2); rest = substr(raw, i + 3)
  e = length(rest) + 1
  for (j = 1; j <= length(rest); j++) { c = substr(rest, j, 1); if (c == "/" || c == "?" || c == "#") { e = j; break } }
  auth = substr(rest, 1, e - 1); tail = substr(rest, e)
  a = 0; for (j = length(auth); j > 0; j--) if (substr(auth, j, 1) == "@") { a = j; break }
  ui = substr(auth, 1, a); hp = substr(auth, a + 1)
  if (substr(hp, 1, 1) == "[") { j = index(hp, "]"); if (!j) die("the URL in " K " has an unterminated [ in its host"); host = substr(hp, 1, j); port = substr(hp, j + 1) }
  else { j = index(hp, ":"); if (j) { host = substr(hp, 1, j - 1); port = substr(hp, j) } else { host = hp; port = "" } }
  if (host == "" || index(host, ",") || index(port, ",")) die("the URL in " K " has no single host to replace")
  return pre ui V port tail
}
END {
  if (bad) exit 3
  K = ENVIRON["GBO_K"]; V = ENVIRON["GBO_V"]; P = ENVIRON["GBO_P"]; U = ENVIRON["GBO_U"] == "1"
  found = 0; changed = 0; sec = ""; svc = 0
  for (i = 1; i <= n; i++) {
    line = L[i]
    if (U && line ~ /^[ \t]*\[/) { sec = line; gsub(/[ \t]/, "", sec); if (sec == "[Service]") svc = i }
    else if (U && sec == "[Service]" && line !~ /^[ \t]*$/) svc = i
    if (parse(line)) {
      found++
      nl = P == "url-host" ? rebuild(urlhost(RAW)) : rebuild(enc(V))
      if (nl != line) { L[i] = nl; changed = 1 }
    }
  }
  ins = -1
  if (!found) {
    if (P == "url-host") die(K " is not set, so there is no URL whose host to change")
    if (U) { if (!svc) die("no [Service] section to add Environment=" K " to"); ins = svc; Q = "\""; add = "Environment=\"" K "=" esc(pct(V), "\\\"") "\"" }
    else { ins = n; add = K "=" V }
    changed = 1
  }
  if (ins == 0) print add
  for (i = 1; i <= n; i++) { print L[i]; if (i == ins) print add }
  exit changed ? 10 : 0
}
`;

/**
 * `GBO_A GBO_H` in a hosts file: the first line mapping GBO_A to GBO_H stays as it is; GBO_H leaves
 * every other line (a line left with no name goes); no such line: `GBO_A<TAB>GBO_H` is appended.
 */
export const HOSTS_AWK =
  COMMON_AWK +
  String.raw`
END {
  if (bad) exit 3
  H = tolower(ENVIRON["GBO_H"]); A = ENVIRON["GBO_A"]; kept = 0; changed = 0; m = 0
  for (i = 1; i <= n; i++) {
    line = L[i]; body = line; com = ""
    j = index(line, "#"); if (j) { body = substr(line, 1, j - 1); com = substr(line, j) }
    nf = split(body, w); has = 0
    for (k = 2; k <= nf; k++) if (tolower(w[k]) == H) has = 1
    if (!has) { O[++m] = line; continue }
    if (!kept && w[1] == A) { kept = 1; O[++m] = line; continue }
    rest = ""; for (k = 2; k <= nf; k++) if (tolower(w[k]) != H) rest = rest (rest == "" ? "" : " ") w[k]
    changed = 1
    if (rest != "") O[++m] = w[1] "\t" rest (com == "" ? "" : " " com)
  }
  if (!kept) { O[++m] = A "\t" ENVIRON["GBO_H"]; changed = 1 }
  for (i = 1; i <= m; i++) print O[i]
  exit changed ? 10 : 0
}
`;

/**
 * `HostName GBO_N` in every `Host` block naming GBO_H (an exact pattern): an existing HostName line
 * is replaced (its indentation kept), a block without one gets it after its `Host` line; no such
 * block: `Host GBO_H` with its HostName is appended. Every other line stays.
 */
export const SSH_CONFIG_AWK =
  COMMON_AWK +
  String.raw`
function kw(line,   s) { s = line; sub(/^[ \t]+/, "", s); if (!match(s, /^[A-Za-z]+/)) return ""; return tolower(substr(s, 1, RLENGTH)) }
function args(line,   s) { s = line; sub(/^[ \t]*[A-Za-z]+[ \t]*=?[ \t]*/, "", s); sub(/[ \t]+$/, "", s); return s }
function names(a,   p, c, k, x) { c = split(a, p); for (k = 1; k <= c; k++) { x = p[k]; gsub(/"/, "", x); if (tolower(x) == H) return 1 } return 0 }
END {
  if (bad) exit 3
  H = tolower(ENVIRON["GBO_H"]); N = ENVIRON["GBO_N"]; blk = 0; any = 0; changed = 0
  for (i = 1; i <= n; i++) {
    k = kw(L[i])
    if (k == "host" || k == "match") { blk = (k == "host" && names(args(L[i]))) ? i : 0; if (blk) { any = 1; HN[blk] = 0 } }
    else if (blk && k == "hostname") HN[blk] = 1
    B[i] = blk
  }
  for (i = 1; i <= n; i++) {
    line = L[i]
    if (B[i] == i) {
      print line
      if (!HN[i]) { ind = "    "; if (i < n && B[i + 1] == i && match(L[i + 1], /^[ \t]+/)) ind = substr(L[i + 1], 1, RLENGTH); print ind "HostName " N; changed = 1 }
      continue
    }
    if (B[i] && kw(line) == "hostname" && args(line) != N) { match(line, /^[ \t]*/); line = substr(line, 1, RLENGTH) "HostName " N; changed = 1 }
    print line
  }
  if (!any) { if (n && L[n] !~ /^[ \t]*$/) print ""; print "Host " ENVIRON["GBO_H"]; print "    HostName " N; changed = 1 }
  exit changed ? 10 : 0
}
`;
