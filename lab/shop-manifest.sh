#!/bin/sh
# The shop data as a container sees it: run INSIDE a container (busybox sh) as
#   sh -s -- DATA_PATH DIR...   < lab/shop-manifest.sh
# One tab-separated line per entry below DATA_PATH/DIR..., sorted by path:
#   path  type(f|d|l)  uid  gid  mode(octal)  sha256 (f) | target (l) | - (d)  link (the first path
#   of the entry's hard-link group when it has more than one link, else -)
# up.sh writes the source's to $GBO_LAB_ROOT/src/shop-manifest.tsv; the end-to-end test runs the
# same script in the destination containers and compares.
set -e
cd "$1"; shift
find "$@" | LC_ALL=C sort | while IFS= read -r f; do
  set -- $(stat -c '%u %g %a %i %h' "$f")
  if [ -L "$f" ]; then t=l; c=$(readlink "$f")
  elif [ -d "$f" ]; then t=d; c=-
  else t=f; c=$(sha256sum "$f" | cut -d' ' -f1)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$t" "$1" "$2" "$3" "$c" "$4" "$5"
done | awk -F'\t' 'BEGIN { OFS = "\t" } {
  link = "-"
  if ($2 == "f" && $8 > 1) { if (!($7 in first)) first[$7] = $1; link = first[$7] }
  print $1, $2, $3, $4, $5, $6, link
}'
