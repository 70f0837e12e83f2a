#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Puts a Debian suite's current kernel image for ARCH (what
# linux-image-FLAVOUR depends on; FLAVOUR is ARCH unless given, e.g.
# arm64-16k) into the cache, and for a foreign ARCH that suite's static
# busybox as well, unpacked with dpkg-deb: nothing is installed on the host.
# apt checks what it downloads against the suite's signed index; the
# machine's own apt sources are read to find its mirror, never changed.
# Prints the unpacked directory: boot/vmlinuz-*, [usr/]lib/modules/*, and
# usr/bin/busybox (foreign ARCH). A kernel already in the cache is reused
# without asking the network.
# usage: fetch-guest.sh SUITE ARCH CACHE_DIR [FLAVOUR]
set -euo pipefail
suite=$1 arch=$2 cache=$3 flavour=${4:-$2}
base="$cache/vm-kernel"
current="$base/$suite-$flavour"
mkdir -p "$base"
exec 9> "$base/.$suite.lock"
flock 9
if [ -f "$current/.complete" ]; then
    realpath "$current"
    exit 0
fi

mirror=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null |
    grep -v -e security -e updates | grep '/debian/$' | head -n1 || true)
if [ -z "$mirror" ]; then
    echo "fetch-guest: no Debian archive found in this machine's apt sources" >&2
    exit 77
fi
state="$base/.apt-$suite"
mkdir -p "$state/parts" "$state/lists/partial" "$state/cache/archives/partial"
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
    > "$state/parts/ooh-guest.list"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$state/parts"
          -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
          -o Dir::State::status=/dev/null -o "APT::Architectures::=$arch"
          -o Debug::NoLocking=true -o APT::Sandbox::User=root)
echo "fetch-guest: updating $suite's $arch index" >&2
apt-get "${apt_opts[@]}" -q update >&2 || {
    echo "fetch-guest: cannot read $suite's index from $mirror" >&2
    exit 77
}
# The metapackage names the image of the suite's current kernel.
image=$(apt-cache "${apt_opts[@]}" depends "linux-image-$flavour:$arch" 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*\).*/\1/p' | head -n1)
if [ -z "$image" ]; then
    echo "fetch-guest: $suite has no linux-image-$flavour for $arch" >&2
    exit 77
fi
pkgs=("$image:$arch")
[ "$arch" = "$(dpkg --print-architecture)" ] || pkgs+=("busybox-static:$arch")
work=$(mktemp -d "$base/dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get "${apt_opts[@]}" -q download "${pkgs[@]}" >&2) || {
    echo "fetch-guest: cannot download ${pkgs[*]} from $suite" >&2
    exit 77
}
dest="$base/$suite-${image#linux-image-}"
rm -rf "$dest" && mkdir -p "$dest"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$dest"
done
ls "$dest"/boot/vmlinuz-* > /dev/null
touch "$dest/.complete"
ln -sfn "$(basename "$dest")" "$current"
echo "fetch-guest: $image from $suite in $dest" >&2
echo "$dest"
