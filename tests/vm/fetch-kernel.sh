#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Puts Debian's kernel image package matching the installed headers
# (linux-headers-RELEASE, the ones ooh.ko is built against) into the cache,
# unpacked with dpkg-deb: nothing is installed on the host. Prints the
# unpacked directory (with boot/vmlinuz-RELEASE and lib/modules/RELEASE).
# usage: fetch-kernel.sh RELEASE CACHE_DIR
set -eu
release=$1 cache=$2
dest="$cache/vm-kernel/$release"
if [ -f "$dest/.complete" ]; then
    echo "$dest"
    exit 0
fi
version=$(dpkg-query -W -f '${Version}' "linux-headers-$release" 2>/dev/null) || {
    echo "fetch-kernel: linux-headers-$release is not installed" >&2
    exit 77
}
work=$(mktemp -d "$cache/vm-kernel-dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current directory.
(cd "$work" && apt-get download -q "linux-image-$release=$version" >&2) || {
    echo "fetch-kernel: cannot download linux-image-$release=$version" >&2
    exit 77
}
rm -rf "$dest" && mkdir -p "$dest"
dpkg-deb -x "$work"/linux-image-*.deb "$dest"
test -f "$dest/boot/vmlinuz-$release"
touch "$dest/.complete"
echo "$dest"
