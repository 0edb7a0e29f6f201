#!/bin/sh
# Run a command in the destination's network namespace with the host's cgroup hierarchies visible.
# `ip netns exec` mounts a fresh /sys, which hides /sys/fs/cgroup; Incus then fails ("Error reading
# host's cpuset.cpus"). Re-mount every mount the root namespace has under /sys/fs/cgroup (tmpfs,
# cgroup v1 controllers, the named systemd hierarchy, cgroup2), in /proc/mounts order, from the
# copy of /proc/mounts up.sh saved, then exec the command.
# Usage: ip netns exec gbo-dst sh netns-exec.sh SAVED_MOUNTS_FILE CMD [ARGS...]
set -e
mounts="$1"; shift
while read -r dev target fstype opts rest; do
  case "$target" in /sys/fs/cgroup|/sys/fs/cgroup/*) ;; *) continue ;; esac
  case "$fstype" in tmpfs|cgroup|cgroup2) ;; *) continue ;; esac
  mkdir -p "$target"
  mount -t "$fstype" -o "$opts" "$dev" "$target"
done < "$mounts"
exec "$@"
