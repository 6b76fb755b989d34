#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3 and NumPy without a container
# registry: debootstrap a minimal root filesystem and `docker import` it.
# Usage: build-offline-base.sh TAG [MIRROR]
# Needs root, debootstrap and a reachable Debian mirror (the host's apt mirror by default).
set -euo pipefail
tag=${1:?usage: build-offline-base.sh TAG [MIRROR]}
mirror=${2:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | head -n1 | awk '{print $2}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /tmp/selfalign-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror into $root" >&2
debootstrap --variant=minbase --include=python3,python3-numpy,python3-pip,python3-venv \
  bookworm "$root" "$mirror" >&2
# Keep the image small: package caches, docs and locales are never used at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
# Debian's postinst already byte-compiled the standard library; make sure of it so a
# read-only root never needs a .pyc write.
chroot "$root" python3 -m compileall -q -j 0 /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null 2>&1 || true
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$tag" >&2
echo "$tag"
