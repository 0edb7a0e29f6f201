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
