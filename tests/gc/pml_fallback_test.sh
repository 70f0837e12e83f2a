#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# GC_OOH_VDB=pml where the OoH guest module is absent (this host): the
# collector must say why the PML ring is unavailable, fall back to another
# strategy (mprotect here, or soft-dirty where the kernel has it) and still
# pass the program's own test.
#
# usage: pml_fallback_test.sh PROGRAM
set -u
if [ -e /dev/ooh-ctl ]; then
    echo "SKIP: the OoH guest module is loaded here; the PML ring is tested in the vm suite"
    exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
GC_OOH_VDB=pml GC_ENABLE_INCREMENTAL=1 GC_PRINT_STATS=1 "$1" > "$log" 2>&1
rc=$?
grep -E "GC Warning|Using|Emulating dirty bits|Soft-dirty" "$log" | sort | uniq -c
if [ $rc -ne 0 ]; then
    echo "FAIL: $(basename "$1") exited with status $rc"
    exit 1
fi
if ! grep -q "GC_OOH_VDB=pml, but the PML ring is unavailable: the OoH guest module is not loaded" "$log"; then
    echo "FAIL: no warning saying why the PML ring is unavailable"
    exit 1
fi
if ! grep -qE "Emulating dirty bits with mprotect|Using soft-dirty bit feature" "$log"; then
    echo "FAIL: the collector did not fall back to mprotect or soft-dirty bits"
    exit 1
fi
echo "PASS: GC_OOH_VDB=pml without the module warned and fell back"
