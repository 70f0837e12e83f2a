#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl migrate` across an oohd restart: oohd is killed and started again
# once the first pre-dump is on the destination. The next pre-dump must
# send every page again (the plugin sees a new oohd session: nothing it
# tracked before can be trusted), never a stale one, and the migration
# must end with every page of the restored service verified.
#
# usage: oohd_restart_test.sh OOHCTL CRIU PLUGIN_SO OOHD WORKLOAD
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail
. "$(dirname "$0")/harness.sh"
migrate_test_init restart "$@"
start_oohd

pages=16384 # 64 MiB
$src_exec setsid "$workload" --mib 64 --rate 2000 --report "$tmp/report" \
    < /dev/null > "$tmp/workload.log" 2>&1 &
wpid=$!
disown
for _ in $(seq 100); do
    [ "$(readlink "/proc/$wpid/exe")" = "$workload" ] && break
    sleep 0.05
done
sleep 0.5

# oohd goes away between pre-dump 1 and 2 (--interval leaves the time).
$src_exec "$oohctl" migrate -t "$wpid" --to "$dst_addr" -D "$tmp/src-img" \
    --dest-dir "$tmp/dst-img" --dest-exec "$dst_exec" --criu "$criu" \
    -L "$(dirname "$plugin")" -s "$tmp/oohd.sock" --max-rounds 3 --interval 1500 \
    --step-timeout 30 > "$tmp/out" 2> "$tmp/err" &
mig=$!
for _ in $(seq 600); do [ -s "$tmp/src-img/1/pre-dump.stats" ] && break; sleep 0.02; done
[ -s "$tmp/src-img/1/pre-dump.stats" ] || fail "the first pre-dump did not finish: $(cat "$tmp/err")"
kill "$oohd_pid"
wait "$oohd_pid" 2> /dev/null
start_oohd
wait "$mig"
rc=$?
cat "$tmp/out" "$tmp/err"
[ "$rc" = 0 ] || fail "oohctl migrate failed (status $rc) across an oohd restart"
sent2=$(awk '$1 == "pre" && $2 == 2 { print $3 }' "$tmp/out")
[ -n "$sent2" ] || fail "no second pre-dump"
[ "$sent2" -ge "$pages" ] ||
    fail "pre-dump 2 after the oohd restart sent $sent2 pages, fewer than the service's $pages"
pid=$wpid wpid=
$dst_exec "$workload" --verify "$pid" --report "$tmp/report" > "$tmp/verify.out" 2>&1 ||
    fail "the restored service failed its check: $(cat "$tmp/verify.out")"
echo "PASS: pre-dump 2 after the oohd restart sent all $sent2 pages; restored: $(cat "$tmp/verify.out")"
