#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run in the guest by guest-init.sh (group pml, ooh.ko loaded): the patched
# bdwgc's dirty bits where Linux 6.1 has no userfaultfd write-protect. The
# VDB ground truth and gctest with GC_OOH_VDB=pml (oohd's pml-ring backend,
# SPML then EPML) and with bdwgc's soft-dirty VDB, one OOH-RESULT line
# each; then word_count (Phoenix-like) in each mode and the mprotect one,
# whose pages marked dirty per read are printed as ratios (OOH-BENCH), not
# judged: TCG is not a machine to time.
res() { echo "OOH-RESULT $1 $2 $3"; }
note() { sed "s/^/OOH-NOTE $1: /"; }
T=/bin/gc-vdb-truth
WC=/bin/ooh-phoenix-word-count
log=/tmp/gc.log

start_oohd() {
    OOH_PML_MODE=$1 oohd --socket /run/oohd-gc.sock --foreground --log-level warning &
    oohd_pid=$!
    for i in $(seq 50); do [ -S /run/oohd-gc.sock ] && break; sleep 0.2; done
}
stop_oohd() {
    kill $oohd_pid
    wait $oohd_pid
    rm -f /run/oohd-gc.sock
}

# truth NAME VDB: gc-vdb-truth must pass and say it used VDB.
truth() {
    timeout 600 $T "$2" > $log 2>&1
    rc=$?
    note "$1" < $log
    if [ $rc -eq 0 ] && tail -n 1 $log | grep -q "^PASS ($2 dirty bits"; then
        res "$1" PASS "$(tail -n 1 $log | sed 's/^PASS //'): $(grep -c ' 0 missed' $log) checks, none missed"
    else
        res "$1" FAIL "exit $rc: $(grep -E 'missed|FAIL|SKIP' $log | grep -v ' 0 missed' | head -3 | tr '\n' ';')"
    fi
}

# gctest_run NAME USING: bdwgc's gctest (threads) in incremental mode must
# pass, say "Using USING", and never lose the dirty bits.
gctest_run() {
    GC_ENABLE_INCREMENTAL=1 GC_PRINT_STATS=1 timeout 900 /bin/gctest > $log 2>&1
    rc=$?
    tail -n 3 $log | note "$1"
    grep -E "GC Warning" $log | sort | uniq -c | head -5 | note "$1"
    if [ $rc -ne 0 ]; then
        res "$1" FAIL "gctest exited $rc: $(tail -n 2 $log | tr '\n' ';')"
    elif ! grep -q "Using $2" $log; then
        res "$1" FAIL "gctest did not use $2: $(grep -m1 -E 'Using|unavailable' $log)"
    elif grep -qE "OoH dirty bits lost|Cannot track a heap section" $log; then
        res "$1" FAIL "the dirty bits were lost: $(grep -m1 -E 'lost|Cannot' $log)"
    else
        res "$1" PASS "gctest passed on $2: $(grep -m1 -E '^Completed [0-9]+ collections' $log)"
    fi
}

# phoenix NAME MODE: word_count's result line (seconds collections max_ms
# median_ms reads read_ms pages) as OOH-BENCH, for the ratios below.
phoenix() {
    out=$(GC_ENABLE_INCREMENTAL=1 timeout 600 $WC --run "$2" --small --threads 2 2>&1)
    echo "OOH-BENCH gc-word-count $1 $out"
    echo "$1 $out" >> /tmp/gc-bench
}

for mode in spml epml; do
    start_oohd $mode
    export OOH_SOCKET=/run/oohd-gc.sock GC_OOH_VDB=pml
    truth gc-vdb-truth-$mode pml
    gctest_run gctest-pml-$mode "the PML ring through oohd"
    phoenix pml-$mode ooh
    unset OOH_SOCKET GC_OOH_VDB
    stop_oohd
done
truth gc-vdb-truth-soft-dirty soft-dirty
export GC_OOH_VDB=off
gctest_run gctest-soft-dirty "soft-dirty bit feature"
phoenix soft-dirty ooh
export GC_USE_GETWRITEWATCH=0
phoenix mprotect mprotect
unset GC_OOH_VDB GC_USE_GETWRITEWATCH

# Pages marked dirty per read, against the mprotect VDB (which marks the
# pages written through its write faults): ratios only.
awk '$2 ~ /^[0-9.]+$/ && $6 > 0 { per[$1] = $8 / $6; line = line sprintf(" %s=%.1f", $1, per[$1]) }
     END {
        printf "OOH-BENCH gc-dirty-pages-per-read%s", line
        if (per["mprotect"] > 0)
            for (m in per) if (m != "mprotect") printf " %s/mprotect=%.2f", m, per[m] / per["mprotect"]
        printf "\n"
     }' /tmp/gc-bench
