#!/usr/bin/env bash
# Builds (once, cached under $GBO_LAB_CACHE/image) the lab's container image: a busybox-static
# rootfs (plus GNU tar) with /opt/gbo, a gbuser user (uid 1000), an init that runs udhcpc on eth0 and the
# container's /etc/gbo/services. Prints the path of the unified image tarball.
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$LAB_DIR/lib.sh"

IMG_CACHE="$GBO_LAB_CACHE/image"
version="$(cat "$LAB_DIR/image.sh" "$LAB_DIR/image/init" "$LAB_DIR/image/udhcpc.script" /bin/busybox /bin/tar | sha256sum | cut -c1-16)"
tarball="$IMG_CACHE/gbo-busybox-$version.tar.gz"
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi

mkdir -p "$IMG_CACHE"
work="$(mktemp -d "$IMG_CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
r="$work/rootfs"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc/gbo,dev,proc,sys,tmp,run,var/log,root,home/gbuser,opt/gbo,usr/share/udhcpc,srv}
chmod 1777 "$r/tmp"
cp /bin/busybox "$r/bin/busybox"
# GNU tar (Debian's, with its libraries) instead of busybox's: like a production container's, it
# restores the owner of symlinks on extraction (busybox tar leaves them root's), which the
# migration's data push (a tar stream, --numeric-owner) and its owner check rely on.
mkdir -p "$r/lib/x86_64-linux-gnu" "$r/lib64"
cp /bin/tar "$r/bin/tar"
for f in $(ldd /bin/tar | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$f")"; cp -L "$f" "$r$f"; done
for applet in $(/bin/busybox --list-full); do
  [ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
done
install -m 0755 "$LAB_DIR/image/init" "$r/sbin/init"
install -m 0755 "$LAB_DIR/image/udhcpc.script" "$r/usr/share/udhcpc/default.script"
cat > "$r/etc/passwd" <<P
root:x:0:0:root:/root:/bin/sh
gbuser:x:1000:1000:General Bots:/home/gbuser:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$r/etc/group" <<G
root:x:0:
gbuser:x:1000:
nogroup:x:65534:
G
echo 'root:*:19000:0:99999:7:::' > "$r/etc/shadow"
echo 'gbuser:*:19000:0:99999:7:::' >> "$r/etc/shadow"
chmod 640 "$r/etc/shadow"
printf '127.0.0.1 localhost\n' > "$r/etc/hosts"
: > "$r/etc/resolv.conf"
echo busybox > "$r/etc/hostname"
chown -R 1000:1000 "$r/home/gbuser"
cat > "$work/metadata.yaml" <<M
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: gbo-lab busybox $(/bin/busybox | head -1 | cut -d' ' -f2)
  os: busybox
  release: lab
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
M
mkdir -p "$work/templates"
echo '{{ container.name }}' > "$work/templates/hostname.tpl"
tar --numeric-owner -C "$work" -czf "$tarball.tmp" metadata.yaml templates rootfs
mv "$tarball.tmp" "$tarball"
echo "$tarball"
