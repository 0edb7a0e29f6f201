#!/bin/sh
# Runs a lab host's daemon (LXD, incusd, sshd) in that host's own mount namespace, so that each
# host sees only its own part of the lab root. Called as
#   unshare -m --propagation slave sh host-exec.sh SAVED_MOUNTS HIDE CMD [ARGS...]   (source)
#   ip netns exec gbo-dst sh host-exec.sh SAVED_MOUNTS HIDE CMD [ARGS...]              (destination)
# HIDE: colon-separated directories covered with an empty read-only tmpfs (the other host's
# tree and the worker's private key).
# `ip netns exec` also mounts a fresh /sys, which hides /sys/fs/cgroup; Incus then fails ("Error
# reading host's cpuset.cpus"). When /sys/fs/cgroup is not mounted, re-mount everything the root
# namespace has there (tmpfs, cgroup v1 controllers, the named systemd hierarchy, cgroup2), in
# /proc/mounts order, from the copy up.sh saved.
set -e
mounts="$1"; hide="$2"; shift 2
if ! grep -q ' /sys/fs/cgroup' /proc/self/mounts; then
  while read -r dev target fstype opts rest; do
    case "$target" in /sys/fs/cgroup|/sys/fs/cgroup/*) ;; *) continue ;; esac
    case "$fstype" in tmpfs|cgroup|cgroup2) ;; *) continue ;; esac
    mkdir -p "$target"
    mount -t "$fstype" -o "$opts" "$dev" "$target"
  done < "$mounts"
fi
IFS=:
for d in $hide; do
  [ -n "$d" ] || continue
  mkdir -p "$d"
  mount -t tmpfs -o ro,size=64k,mode=755 gbo-lab-hidden "$d"
done
unset IFS
exec "$@"
