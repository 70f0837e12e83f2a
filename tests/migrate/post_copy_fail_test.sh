#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl migrate --post-copy` when the restore fails after the lazy dump
# began serving its pages from the stopped source: the service listens on
# the service address, which the destination never gets (no
# --switch-command), so its criu restore can't bind the socket. oohctl must
# end the source's page server, fail naming the restore, and the source
# service must run on, not stopped, with every page it wrote intact (the
# pages the post-copy held back never left it).
#
# usage: post_copy_fail_test.sh OOHCTL CRIU PLUGIN_SO OOHD WORKLOAD
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail
. "$(dirname "$0")/harness.sh"
migrate_test_init pcfail "$@"
allow_post_copy
start_oohd

$src_exec setsid "$workload" --mib 64 --rate 2000 --report "$tmp/report" \
    --listen "$service_addr:7070" < /dev/null > "$tmp/workload.log" 2>&1 &
wpid=$!
disown
for _ in $(seq 100); do
    [ "$(readlink "/proc/$wpid/exe")" = "$workload" ] && break
    sleep 0.05
done
sleep 0.5 # past its first stamping of every page

$src_exec "$oohctl" migrate -t "$wpid" --to "$dst_addr" -D "$tmp/src-img" \
    --dest-dir "$tmp/dst-img" --dest-exec "$dst_exec" --criu "$criu" \
    -L "$(dirname "$plugin")" -s "$tmp/oohd.sock" --max-rounds 2 --step-timeout 30 \
    --post-copy "$src_addr" > "$tmp/out" 2> "$tmp/err"
rc=$?
cat "$tmp/out" "$tmp/err"
[ "$rc" = 1 ] || fail "oohctl migrate exited with $rc, not 1, when the restore failed"
grep -q "^dump .* left on the source for post-copy" "$tmp/out" ||
    fail "the lazy dump did not get to serve its pages"
grep -q "^oohctl migrate: stopped at restore;" "$tmp/err" ||
    fail "oohctl migrate did not say it stopped at the restore"
state=$(awk '/^State:/ { print $2 }' "/proc/$wpid/status" 2> /dev/null)
[ -n "$state" ] || fail "the source service is gone"
[ "$state" != T ] && [ "$state" != t ] || fail "the source service was left stopped ($state)"
"$workload" --verify "$wpid" --report "$tmp/report" > "$tmp/verify.out" 2>&1 ||
    fail "the source service failed its check: $(cat "$tmp/verify.out")"
echo "PASS: the post-copy migration stopped at the restore; the source runs on: $(cat "$tmp/verify.out")"
