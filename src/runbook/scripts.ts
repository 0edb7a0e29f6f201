/**
 * The shell scripts that prove data whole: the same digest on the stopped source and over the
 * destination's copy, a per-file listing checked inside the container. Busybox-compatible.
 */

/**
 * Prints `files=<n> sha256=<hex>` over the files of the given folders under a root: the same script
 * on the stopped source and over the destination's pulled copy, so the two digests compare directly.
 * Busybox-compatible (no `sort -z`).
 */
export const MANIFEST_SCRIPT =
  'cd "$1" || exit 1; shift; l=$(mktemp); for d in "$@"; do [ -e "$d" ] && find "$d" -type f; done | LC_ALL=C sort > "$l"; ' +
  'n=$(wc -l < "$l" | tr -d " "); s=$(tr "\\n" "\\0" < "$l" | xargs -0 -r sha256sum | sha256sum | cut -d" " -f1); rm -f "$l"; ' +
  'echo "files=$n sha256=$s"';

/** Prints `sha256 mtime path` for each file under the given folders of a root (the host's final copy). */
export const LISTING_SCRIPT =
  'cd "$1" || exit 1; shift; n=0; for d in "$@"; do [ -e "$d" ] && find "$d" -type f; done | LC_ALL=C sort | ' +
  '{ while IFS= read -r f; do n=$((n+1)); printf "%s %s %s\\n" "$(sha256sum < "$f" | cut -d" " -f1)" "$(stat -c %Y "$f")" "$f"; done; echo "end $n"; }';

/** Prints every path (files and folders) under the given folders of a root. */
export const PATHS_SCRIPT = 'cd "$1" || exit 1; shift; for d in "$@"; do [ -e "$d" ] && find "$d"; done';

/** Reads LISTING_SCRIPT's lines inside a container and checks each file there; busybox-compatible. */
export const CONTAINER_CHECK_SCRIPT =
  'cd "$1" || exit 1; ok=0; changed=0; bad=0; want=; while read -r sum mt f; do ' +
  'if [ "$sum" = end ]; then want=$mt; ' +
  'elif [ ! -f "$f" ]; then echo "missing: $f" >&2; bad=$((bad+1)); ' +
  'elif [ "$(stat -c %Y "$f")" != "$mt" ]; then changed=$((changed+1)); ' +
  'elif [ "$(sha256sum < "$f" | cut -d" " -f1)" = "$sum" ]; then ok=$((ok+1)); ' +
  'else echo "differs: $f" >&2; bad=$((bad+1)); fi; done; ' +
  // The listing ends with its count: a listing cut short (its side failed) cannot pass.
  'echo "files ok=$ok changed-by-services=$changed bad=$bad of $want"; [ "$bad" -eq 0 ] && [ "$want" = $((ok+changed)) ]';

/**
 * Prints `uid:gid:mode path` for every path (files and folders) under the given folders of a root
 * (the host's final copy, after `shift-ids`), then `end <n>`.
 */
export const OWNERS_LISTING_SCRIPT =
  'cd "$1" || exit 1; shift; n=0; for d in "$@"; do [ -e "$d" ] && find "$d"; done | LC_ALL=C sort | ' +
  '{ while IFS= read -r f; do n=$((n+1)); printf "%s %s\\n" "$(stat -c %u:%g:%a "$f")" "$f"; done; echo "end $n"; }';

/**
 * Reads OWNERS_LISTING_SCRIPT's lines inside a container: each path has the same numeric owner,
 * group and mode there. Busybox-compatible (`stat -c` works in busybox).
 */
export const CONTAINER_OWNERS_SCRIPT =
  'cd "$1" || exit 1; ok=0; bad=0; want=; while read -r own f; do ' +
  'if [ "$own" = end ]; then want=$f; ' +
  'elif [ ! -e "$f" ] && [ ! -L "$f" ]; then echo "missing: $f" >&2; bad=$((bad+1)); ' +
  'elif [ "$(stat -c %u:%g:%a "$f")" = "$own" ]; then ok=$((ok+1)); ' +
  'else echo "owner or mode differs: $f is $(stat -c %u:%g:%a "$f"), expected $own" >&2; bad=$((bad+1)); fi; done; ' +
  'echo "owners ok=$ok bad=$bad of $want"; [ "$bad" -eq 0 ] && [ "$want" = "$ok" ]';

/**
 * Host-side data of an unprivileged source container is stored shifted by its idmap (host uid =
 * base + N); the container extracts the push as its own root and expects its own view (N). For
 * each path of the final copy with uid ≥ base: uid - base (gid likewise), the mode put back
 * (chown clears setuid/setgid bits). Idempotent: shifted IDs are below base (an idmap's base lies
 * above the container's ID range), so a second run finds nothing to do. Base 0: no shift.
 * Runs on the destination host (bash, GNU find/stat/chown).
 */
export const SHIFT_IDS_SCRIPT =
  'cd "$1" || exit 1; b=$2; [ "$b" -gt 0 ] || exit 0; ' +
  'find . \\( -uid +$((b-1)) -o -gid +$((b-1)) \\) -print0 | while IFS= read -r -d "" f; do ' +
  'read -r u g m <<< "$(stat -c "%u %g %a" "$f")"; [ "$u" -ge "$b" ] && u=$((u-b)); [ "$g" -ge "$b" ] && g=$((g-b)); ' +
  'chown -h "$u:$g" "$f" || exit 1; [ -L "$f" ] || chmod "$m" "$f" || exit 1; done';

/** Exit 0 when no path under `$1` has a uid or gid ≥ `$2` (or `$2` is 0: nothing to shift). */
export const SHIFTED_CHECK_SCRIPT = 'b=$2; [ "$b" -eq 0 ] || [ -z "$(find "$1" \\( -uid +$((b-1)) -o -gid +$((b-1)) \\) -print -quit)" ]';
