#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl migrate` when the destination disappears between two rounds: the
# destination host (its PID namespace and its network namespace) goes away
# once the first pre-dump is on it. oohctl must fail naming the step where
# it stopped, and the source service must keep running, not stopped, with
# every page it wrote intact.
#
# usage: dest_lost_test.sh OOHCTL CRIU PLUGIN_SO OOHD WORKLOAD
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail
. "$(dirname "$0")/harness.sh"
migrate_test_init lost "$@"
start_oohd

$src_exec setsid "$workload" --mib 64 --rate 2000 --report "$tmp/report" \
    < /dev/null > "$tmp/workload.log" 2>&1 &
wpid=$!
disown
for _ in $(seq 100); do
    [ "$(readlink "/proc/$wpid/exe")" = "$workload" ] && break
    sleep 0.05
done
sleep 0.5 # past its first stamping of every page

$src_exec "$oohctl" migrate -t "$wpid" --to "$dst_addr" -D "$tmp/src-img" \
    --dest-dir "$tmp/dst-img" --dest-exec "$dst_exec" --criu "$criu" \
    -L "$(dirname "$plugin")" -s "$tmp/oohd.sock" --max-rounds 4 --interval 1500 \
    --step-timeout 30 > "$tmp/out" 2> "$tmp/err" &
mig=$!
# The first pre-dump is on the destination: take the destination away.
for _ in $(seq 600); do [ -s "$tmp/src-img/1/pre-dump.stats" ] && break; sleep 0.02; done
[ -s "$tmp/src-img/1/pre-dump.stats" ] || fail "the first pre-dump did not finish: $(cat "$tmp/err")"
hosts_down_dst() {
    kill -9 "$dst_init" && dst_init= && ip netns del "$hosts_prefix-dst"
}
hosts_down_dst || fail "can't remove the destination"
wait "$mig"
rc=$?
cat "$tmp/out" "$tmp/err"
[ "$rc" = 1 ] || fail "oohctl migrate exited with $rc, not 1, when the destination went away"
grep -Eq "^oohctl migrate: stopped at (page server for )?(pre-dump [0-9]+|dump)" "$tmp/err" ||
    fail "oohctl migrate did not say where it stopped"
state=$(awk '/^State:/ { print $2 }' "/proc/$wpid/status" 2> /dev/null)
[ -n "$state" ] || fail "the source service is gone"
[ "$state" != T ] && [ "$state" != t ] || fail "the source service was left stopped ($state)"
"$workload" --verify "$wpid" --report "$tmp/report" > "$tmp/verify.out" 2>&1 ||
    fail "the source service failed its check: $(cat "$tmp/verify.out")"
echo "PASS: the migration stopped at $(sed -n 's/^oohctl migrate: stopped at \([^;]*\);.*/\1/p' "$tmp/err"); the source runs on: $(cat "$tmp/verify.out")"
