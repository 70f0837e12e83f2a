#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Chain test: a workload that keeps writing (new mappings, munmaps, madvise,
# a second thread, a child forked between pre-dumps) goes through
# `criu pre-dump --ooh` x3 -> `criu dump --ooh` -> `criu restore`, and the
# restored processes verify every page against the generations they keep.
# Also checks that each pre-dump/dump taken with the workload paused wrote at
# most 1.1 x the pages the workload wrote since the previous one.
#
# usage: chain_test.sh CRIU PLUGIN_SO OOHD WORKLOAD
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail

criu=${1:-} plugin=${2:-} oohd=${3:-} workload=${4:-}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; dump_logs; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (CRIU dumps and restores processes)"
for f in "$criu" "$plugin" "$oohd" "$workload"; do
    [ -n "$f" ] && [ -x "$f" -o -f "$f" ] || skip "missing build output '$f' (patched CRIU not built: see the CRIU part of meson's summary)"
done

tmp=$(mktemp -d /tmp/ooh-criu-chain.XXXXXX)
# CRIU loads every .so of its plugin directory: the plugin's build
# directory holds only ooh_plugin.so, and its rpath finds libooh there.
plugdir=$(cd "$(dirname "$plugin")" && pwd) wdir=$tmp/work img=$tmp/img
mkdir -p "$wdir" "$img"

oohd_pid= wpid= cpid=
cleanup() {
    for p in $wpid $cpid; do kill -9 "$p" 2>/dev/null; done
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2>/dev/null && wait "$oohd_pid" 2>/dev/null
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

dump_logs() {
    for l in "$tmp"/*.log "$img"/*/*.log; do
        [ -f "$l" ] || continue
        echo "---- $l (errors and last lines)"
        grep -E "Error|Warn|ooh:" "$l" | tail -n 15
        tail -n 5 "$l"
    done
}

export OOH_SOCKET=$tmp/oohd.sock

# Every criu run has a deadline far below Meson's 300 s: a hung one (e.g.
# compel waiting for a breakpoint trap that never comes) is killed, with its
# children, and fails the test showing the last lines it logged.
criu_deadline=60
with_deadline() { # LOG OUT WHAT CMD... (OUT: file for its output, or -)
    local log=$1 out=$2 what=$3 rc
    shift 3
    if [ "$out" = - ]; then
        timeout -k 5 "$criu_deadline" "$@"
    else
        timeout -k 5 "$criu_deadline" "$@" > "$out" 2>&1
    fi
    rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "---- $what: no answer within $criu_deadline s, killed; the last lines of $log:"
        tail -n 5 "$log" 2>/dev/null
        fail "$what hung"
    fi
    return $rc
}

# Without soft-dirty, stock pre-dump aborted (BUG at criu/mem.c); the series
# refuses it up front with a message naming --ooh.
sleep 60 < /dev/null > /dev/null 2>&1 &
sleeper=$!
mkdir -p "$img/nosd"
if with_deadline "$img/nosd/pre-dump.log" "$tmp/nosd.out" "criu pre-dump without --ooh" \
    "$criu" pre-dump -t "$sleeper" -D "$img/nosd" -o pre-dump.log; then
    # Only a kernel with soft-dirty may pre-dump without --ooh.
    with_deadline "$tmp/check-sd.log" "$tmp/check-sd.log" "criu check" \
        "$criu" check --feature mem_dirty_track ||
        fail "pre-dump without --ooh succeeded on a kernel without soft-dirty"
else
    grep -q -- "--ooh" "$img/nosd/pre-dump.log" ||
        fail "pre-dump without soft-dirty failed without naming --ooh"
fi
kill "$sleeper" 2>/dev/null

# No oohd yet: the feature check must fail, naming the socket.
if with_deadline "$tmp/check-no-oohd.log" "$tmp/check-no-oohd.log" "criu check without oohd" \
    "$criu" check --feature mem_dirty_track --ooh -L "$plugdir"; then
    fail "criu check --feature mem_dirty_track --ooh passed without oohd"
fi
grep -q "$OOH_SOCKET" "$tmp/check-no-oohd.log" || fail "the check without oohd did not name its socket"

"$oohd" --socket "$OOH_SOCKET" --foreground --log-level info > "$tmp/oohd.log" 2>&1 &
oohd_pid=$!
for _ in $(seq 100); do [ -S "$OOH_SOCKET" ] && break; sleep 0.05; done
[ -S "$OOH_SOCKET" ] || fail "oohd did not come up"

with_deadline "$tmp/check.log" "$tmp/check.log" "criu check --ooh" \
    "$criu" check --feature mem_dirty_track --ooh -L "$plugdir" ||
    fail "criu check --feature mem_dirty_track --ooh failed"

# setsid: no controlling terminal to dump; stdio to a file CRIU can reopen.
setsid "$workload" --dir "$wdir" < /dev/null > "$tmp/workload.log" 2>&1 &
disown  # the dump kills it: no job report
for _ in $(seq 200); do [ -f "$wdir/pid-main" ] && break; sleep 0.05; done
[ -f "$wdir/pid-main" ] || fail "workload did not start"
wpid=$(cat "$wdir/pid-main")

pids() { echo "$wpid" ${cpid:-}; }

# Pauses every process; prints the distinct pages they wrote since resume.
pause_all() {
    local total=0 p
    rm -f "$wdir"/paused-*
    for p in $(pids); do kill -RTMIN "$p"; done
    for p in $(pids); do
        for _ in $(seq 200); do [ -f "$wdir/paused-$p" ] && break; sleep 0.02; done
        [ -f "$wdir/paused-$p" ] || fail "process $p did not pause"
        total=$((total + $(awk '{print $2}' "$wdir/paused-$p")))
    done
    echo "$total"
}
resume_all() { local p; for p in $(pids); do kill -RTMIN+1 "$p"; done; }

# Pages in a dump's images.
image_pages() {
    local bytes
    bytes=$(cat "$1"/pages-*.img 2>/dev/null | wc -c)
    echo $((bytes / 4096))
}

run_criu() { # ACTION DIR [args...]
    local action=$1 dir=$2; shift 2
    mkdir -p "$img/$dir"
    with_deadline "$img/$dir/$action.log" - "criu $action into $dir" \
        "$criu" "$action" -t "$wpid" -D "$img/$dir" -o "$action.log" -v4 -L "$plugdir" --ooh "$@" ||
        fail "criu $action into $dir failed"
    # CRIU logs some harmless errors (RLIMIT_NOFILE, no parent pagemap for a
    # new task); errors of the memory path or the plugin are not.
    grep -E "Error.*(ooh: |mem\.c|page-xfer.*in parent)" "$img/$dir/$action.log" &&
        fail "criu $action into $dir logged memory tracking errors"
    return 0
}

check_ratio() { # DIR WRITTEN
    local pages written=$2 limit
    pages=$(image_pages "$img/$1")
    limit=$(( (written * 11 + 9) / 10 ))
    echo "$1: $pages pages dumped, workload wrote $written pages (limit $limit)"
    [ "$pages" -le "$limit" ] || fail "$1 dumped $pages pages for $written written (> 1.1x)"
    [ "$written" -gt 500 ] || fail "$1: the workload wrote too little ($written pages) to measure"
}

sleep 0.5
# 1: full pre-dump while the workload runs (writes right after unfreeze).
run_criu pre-dump 1
echo "1: $(image_pages "$img/1") pages dumped (first pre-dump, full)"

# A child forked between pre-dumps is tracked for the first time and dumped
# in full by the next one.
kill -USR2 "$wpid"
for _ in $(seq 200); do [ -f "$wdir/pid-child" ] && break; sleep 0.02; done
[ -f "$wdir/pid-child" ] || fail "workload did not fork"
cpid=$(cat "$wdir/pid-child")
sleep 0.5

pause_all > /dev/null
run_criu pre-dump 2 --prev-images-dir ../1
echo "2: $(image_pages "$img/2") pages dumped (includes the new child in full)"
resume_all
sleep 1

written=$(pause_all)
run_criu pre-dump 3 --prev-images-dir ../2
check_ratio 3 "$written"
resume_all
sleep 1

written=$(pause_all)
run_criu dump dump --prev-images-dir ../3
check_ratio dump "$written"

# The dumped tree is killed; its pids must be free (reaped) for restore.
for p in $(pids); do
    for _ in $(seq 100); do [ -d "/proc/$p" ] || break; sleep 0.05; done
    [ -d "/proc/$p" ] && fail "process $p still exists after dump"
done

with_deadline "$img/dump/restore.log" - "criu restore" \
    "$criu" restore -D "$img/dump" -o restore.log -v4 -L "$plugdir" --restore-detached ||
    fail "criu restore failed"
for p in $(pids); do kill -0 "$p" 2>/dev/null || fail "process $p not restored"; done

# The restored tree is paused; verification runs in every process.
for p in $(pids); do kill -USR1 "$p"; done
for p in $(pids); do
    for _ in $(seq 300); do [ -f "$wdir/result-$p" ] && break; sleep 0.05; done
    [ -f "$wdir/result-$p" ] || fail "process $p did not report its verification"
    echo "restored $p: $(cat "$wdir/result-$p")"
    grep -q '^OK' "$wdir/result-$p" || fail "memory of $p differs after restore"
done
wpid= cpid=
echo "chain: restorable chain of 3 pre-dumps + dump with --ooh"

# A dump whose parent is not the previous dump (pre-dump 2 is skipped): the
# pages written between pre-dumps 1 and 2 are in no set the dump gets, so
# the plugin must notice and save every page, or the restore is stale.
wdir=$tmp/branch img=$tmp/img-branch
mkdir -p "$wdir" "$img"
setsid "$workload" --dir "$wdir" < /dev/null > "$tmp/workload-branch.log" 2>&1 &
disown
for _ in $(seq 200); do [ -f "$wdir/pid-main" ] && break; sleep 0.05; done
[ -f "$wdir/pid-main" ] || fail "second workload did not start"
wpid=$(cat "$wdir/pid-main")
sleep 0.3
run_criu pre-dump 1
sleep 0.5
run_criu pre-dump 2 --prev-images-dir ../1
sleep 0.5
pause_all > /dev/null
run_criu dump dump --prev-images-dir ../1
grep -q "no tracking history of $wpid matches the parent images" "$img/dump/dump.log" ||
    fail "the plugin did not notice that the dump skips pre-dump 2"
for _ in $(seq 100); do [ -d "/proc/$wpid" ] || break; sleep 0.05; done
with_deadline "$img/dump/restore.log" - "criu restore of the branched chain" \
    "$criu" restore -D "$img/dump" -o restore.log -v4 -L "$plugdir" --restore-detached ||
    fail "criu restore of the branched chain failed"
kill -USR1 "$wpid"
for _ in $(seq 300); do [ -f "$wdir/result-$wpid" ] && break; sleep 0.05; done
[ -f "$wdir/result-$wpid" ] || fail "branched: $wpid did not report its verification"
echo "branched chain, restored $wpid: $(cat "$wdir/result-$wpid")"
grep -q '^OK' "$wdir/result-$wpid" || fail "memory of $wpid differs after restore (branched chain)"
wpid=
echo "PASS: restorable --ooh chains, linear and branched"
exit 0
