#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds CRIU 4.1.1 with the patch series in criu-plugin/patches/criu-4.1.1/
# and copies the patched criu executable and its plugin headers into the
# build tree. The patched tree is cached by the hash of its inputs (tarball,
# series, this script), so a rebuild with an unchanged series costs nothing.
#
# usage: build-criu.sh --root SRCROOT --cache-dir DIR --out DIR --plugin-dir DIR [--jobs N]
#
# --plugin-dir is compiled into criu as its default plugin directory
# (CRIU's PLUGINDIR): the one `meson install` puts ooh_plugin.so in, never
# /usr/lib/criu, where a stock criu would find a plugin with hooks it does not
# know and refuse to run.
set -euo pipefail

version=4.1.1
tarball=criu_$version.orig.tar.xz
tarball_sha256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe

root= cache= out= plugindir= jobs=2
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --cache-dir) cache=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --plugin-dir) plugindir=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) sed -n '/^# usage:/s/^# //p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "$root" ] && [ -n "$cache" ] && [ -n "$out" ] && [ -n "$plugindir" ] || { sed -n '/^# usage:/s/^# //p' "$0" >&2; exit 2; }

patches=("$root"/criu-plugin/patches/criu-$version/*.patch)
mkdir -p "$cache/criu" "$out"

# One builder at a time per cache: two build directories may share it.
exec 9>"$cache/criu/.lock"
flock 9

src=$("$root/scripts/fetch-debian-source" --suite trixie --package criu --file "$tarball" \
    --sha256 "$tarball_sha256" --dest "$cache/debian-src")

key=$( { echo "$tarball_sha256 $plugindir"; cat "${patches[@]}" "$0"; } | sha256sum | cut -c1-16)
tree="$cache/criu/criu-$version-$key"

if [ ! -f "$tree/.ooh-built" ]; then
    echo "build-criu: building patched CRIU $version in $tree" >&2
    rm -rf "$tree" "$tree.tmp"
    mkdir -p "$tree.tmp"
    tar -xJf "$src" -C "$tree.tmp" --strip-components=1
    for p in "${patches[@]}"; do
        patch -d "$tree.tmp" -p1 --batch --forward --quiet < "$p" ||
            { echo "build-criu: $(basename "$p") does not apply" >&2; exit 1; }
    done
    # CRIU's build records no absolute paths in criu itself, but its test
    # tree (zdtm) is used in place: build at the final path.
    mv "$tree.tmp" "$tree"
    if ! nice -n 10 make -C "$tree" -j"$jobs" PLUGINDIR="$plugindir" criu > "$tree/build.log" 2>&1; then
        tail -n 30 "$tree/build.log" >&2
        echo "build-criu: make criu failed, see $tree/build.log" >&2
        exit 1
    fi
fi
# The stamp's age says when a tree was last built or used. Other checkouts
# (worktrees with another series) share this cache and run their zdtm suite
# in place, so a tree of another series goes only once nobody has used it
# for a day.
touch "$tree/.ooh-built"
for stamp in $(find "$cache/criu" -mindepth 2 -maxdepth 2 -path "*/criu-$version-*/.ooh-built" -mmin +1440); do
    [ "$(dirname "$stamp")" = "$tree" ] || rm -rf "$(dirname "$stamp")"
done

install -m 755 "$tree/criu/criu" "$out/criu"
install -m 644 "$tree/criu/include/criu-plugin.h" "$tree/criu/include/criu-log.h" \
    "$tree/criu/include/log.h" "$out/"
# The zdtm suite runs from the patched tree.
echo "$tree" > "$out/criu-source-dir.txt"
