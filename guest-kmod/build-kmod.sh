#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Builds ooh.ko with kbuild out of the source tree (kbuild writes next to the
# sources, so they are copied into a scratch directory first).
# usage: build-kmod.sh SRCDIR KDIR SCRATCH OUTPUT
set -eu
src=$1 kdir=$2 scratch=$3 out=$4
mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
cp "$src"/Kbuild "$src"/*.c "$src"/*.h "$scratch"/
rm -rf "$scratch/include" && cp -r "$src/include" "$scratch/include"
mkdir -p "$scratch/xen" && cp "$src/../hypervisor/xen/ooh_spml_abi.h" "$scratch/xen/" 2>/dev/null || true
make -s -C "$kdir" M="$scratch" modules >"$scratch/build.log" 2>&1 || {
    cat "$scratch/build.log" >&2
    exit 1
}
cp "$scratch/ooh.ko" "$out"
