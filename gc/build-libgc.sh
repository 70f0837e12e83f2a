#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds bdwgc 8.2.2 (Debian bookworm's libgc source) with the patch series
# in gc/patches/libgc-8.2.2/ (OOH_VDB: dirty bits from libooh
# self-tracking), as a separate library linked against the project's
# libooh, and copies it, its headers, a static copy (for the tests that
# reach the collector's internals) and bdwgc's own test programs into the
# build tree. The system's libgc is untouched. The built tree is cached by
# the hash of its inputs (tarball, series, this script, libooh's ABI), so a
# rebuild with unchanged inputs costs nothing.
#
# usage: build-libgc.sh --root SRCROOT --cache-dir DIR --out DIR --libooh LIBOOH_SO [--jobs N]
set -euo pipefail

version=8.2.2
tarball=libgc_$version.orig.tar.gz
tarball_sha256=f30107bcb062e0920a790ffffa56d9512348546859364c23a14be264b38836a0

root= cache= out= libooh= jobs=2
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --cache-dir) cache=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --libooh) libooh=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) sed -n '/^# usage:/s/^# //p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "$root" ] && [ -n "$cache" ] && [ -n "$out" ] && [ -n "$libooh" ] ||
    { sed -n '/^# usage:/s/^# //p' "$0" >&2; exit 2; }

patches=("$root"/gc/patches/libgc-$version/*.patch)
# libgc links libooh dynamically: only its ABI (headers, symbol version
# script) decides what is built; libooh's code takes effect at run time.
abi=("$root"/libooh/include/ooh/self.h "$root"/libooh/include/ooh/ooh.h "$root"/libooh/libooh.map)
mkdir -p "$cache/gc" "$out"

# One builder at a time per cache: two build directories may share it.
exec 9>"$cache/gc/.lock"
flock 9

src=$("$root/scripts/fetch-debian-source" --suite bookworm --package libgc --file "$tarball" \
    --sha256 "$tarball_sha256" --dest "$cache/debian-src")

key=$( { echo "$tarball_sha256"; cat "${patches[@]}" "$0" "${abi[@]}"; } | sha256sum | cut -c1-16)
tree="$cache/gc/gc-$version-$key"

# Debian's configuration (debian/rules), less C++ and the docs; OOH_VDB
# and libooh on top.
configure_args=(--with-libatomic-ops=none --disable-docs --disable-dependency-tracking
    "CPPFLAGS=-DOOH_VDB -I$root/libooh/include"
    "LDFLAGS=-L$(dirname "$libooh")" "LIBS=-looh")

# The programs of bdwgc's test suite that run here (libtool keeps the real
# executables in .libs/); gctest-st is gctest with no extra threads.
test_programs=(gctest middletest hugetest realloc_test smashtest staticrootstest
    threadleaktest threadkey_test subthreadcreate_test initsecondarythread_test
    disclaim_test disclaim_weakmap_test)

step() {  # step LOG COMMAND...: runs quietly, shows the log's end on failure
    local log=$1; shift
    if ! nice -n 10 "$@" > "$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "build-libgc: '$*' failed, see $log" >&2
        exit 1
    fi
}

if [ ! -f "$tree/.ooh-built" ]; then
    echo "build-libgc: building patched bdwgc $version in $tree" >&2
    rm -rf "$tree" "$tree.tmp"
    mkdir -p "$tree.tmp/src"
    tar -xzf "$src" -C "$tree.tmp/src" --strip-components=1
    for p in "${patches[@]}"; do
        patch -d "$tree.tmp/src" -p1 --batch --forward --quiet < "$p" ||
            { echo "build-libgc: $(basename "$p") does not apply" >&2; exit 1; }
    done
    # Shared and static apart, as Debian does: --enable-static turns off
    # the symbol visibility attributes.
    mkdir -p "$tree.tmp/shared" "$tree.tmp/static"
    cd "$tree.tmp/shared"
    step configure.log ../src/configure --enable-shared --disable-static "${configure_args[@]}"
    step make.log make -j"$jobs"
    step check-build.log make -j"$jobs" check TESTS=
    cp .libs/gctest gctest-mt
    rm -f tests/test.o gctest .libs/gctest .libs/lt-gctest
    step gctest-st.log make gctest CFLAGS_EXTRA=-DNTHREADS=0
    cp .libs/gctest gctest-st
    cd "$tree.tmp/static"
    step configure.log ../src/configure --disable-shared --enable-static "${configure_args[@]}"
    step make.log make -j"$jobs" libgc.la
    mv "$tree.tmp" "$tree"
fi
# The stamp's age says when a tree was last built or used; a tree of
# another series goes once nobody has used it for a day.
touch "$tree/.ooh-built"
for stamp in $(find "$cache/gc" -mindepth 2 -maxdepth 2 -path "*/gc-$version-*/.ooh-built" -mmin +1440); do
    [ "$(dirname "$stamp")" = "$tree" ] || rm -rf "$(dirname "$stamp")"
done

install -m 755 "$tree/shared/.libs/libgc.so.1" "$out/libgc.so.1"
install -m 644 "$tree/static/.libs/libgc.a" "$out/libgc.a"
install -m 644 "$tree/src/include/gc.h" "$tree/src/include/gc_version.h" \
    "$tree/src/include/gc_config_macros.h" "$tree/src/include/gc_pthread_redirects.h" "$out/"
install -m 755 "$tree/shared/gctest-mt" "$out/gctest"
install -m 755 "$tree/shared/gctest-st" "$out/gctest-st"
for t in "${test_programs[@]:1}"; do
    install -m 755 "$tree/shared/.libs/$t" "$out/$t"
done
# staticrootstest's two libraries.
install -m 755 "$tree/shared/.libs/libstaticrootslib_test.so.0" \
    "$tree/shared/.libs/libstaticrootslib2_test.so.0" "$out/"
