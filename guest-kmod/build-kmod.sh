#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Builds ooh.ko with kbuild out of the source tree (kbuild writes next to the
# sources, so they are copied into a scratch directory first; the shared ABI
# headers, which kbuild only reads, are used where they are).
# usage: build-kmod.sh SRCDIR UAPIDIR KDIR SCRATCH OUTPUT
set -eu
src=$1 uapi=$2 kdir=$3 scratch=$4 out=$5
[ -f "$uapi/ooh/ooh_ring.h" ] || { echo "build-kmod.sh: no ooh/ooh_ring.h in $uapi" >&2; exit 1; }
uapi=$(cd "$uapi" && pwd)
mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
cp "$src"/Kbuild "$src"/*.c "$src"/*.h "$scratch"/
make -s -C "$kdir" M="$scratch" OOH_UAPI_DIR="$uapi" modules >"$scratch/build.log" 2>&1 || {
    cat "$scratch/build.log" >&2
    exit 1
}
cp "$scratch/ooh.ko" "$out"
