#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs one of bdwgc's own test programs (or a Phoenix-like application of
# bench/gc/phoenix) against the patched library with
# the OoH dirty bits (GC_OOH_VDB=uffd, incremental mode, soft-dirty bits
# ruled out), and checks that they were really used, and never lost, on top
# of the program's own verdict. Exit 77 (skip) where libooh self-tracking
# cannot open.
#
# usage: run_bdwgc_test.sh PROGRAM [ARG...]
set -u

prog=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT

GC_OOH_VDB=uffd GC_ENABLE_INCREMENTAL=1 GC_USE_GETWRITEWATCH=0 GC_PRINT_STATS=1 \
    "$prog" "$@" > "$log" 2>&1
rc=$?
# The statistics are long: show the end, and the lines that matter.
tail -n 12 "$log"
grep -E "GC Warning|Using userfaultfd|Reading dirty bits|Emulating dirty bits" "$log" | sort | uniq -c

if grep -q "userfaultfd dirty tracking is unavailable" "$log"; then
    echo "SKIP: $(grep -m1 'unavailable' "$log")"
    exit 77
fi
if [ $rc -ne 0 ]; then
    echo "FAIL: $(basename "$prog") exited with status $rc"
    exit 1
fi
if grep -qE "OoH dirty bits lost|Cannot track a heap section" "$log"; then
    echo "FAIL: the OoH dirty bits were lost on the way (see the warnings above)"
    exit 1
fi
if ! grep -q "Using userfaultfd write-protect (libooh)" "$log"; then
    echo "FAIL: $(basename "$prog") did not use the OoH dirty bits"
    exit 1
fi
echo "PASS: $(basename "$prog") with the OoH dirty bits"
