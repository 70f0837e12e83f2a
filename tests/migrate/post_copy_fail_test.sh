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

oohctl=${1:-} criu=${2:-} plugin=${3:-} oohd=${4:-} workload=${5:-}
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, CRIU)"
for f in "$oohctl" "$criu" "$plugin" "$oohd" "$workload"; do
    [ -n "$f" ] && [ -e "$f" ] || skip "missing build output '$f' (patched CRIU not built: see the CRIU part of meson's summary)"
done
for t in ip nsenter unshare tar; do
    command -v "$t" > /dev/null || skip "needs $t"
done
for v in oohctl criu plugin oohd workload; do
    declare "$v=$(readlink -f "${!v}")"
done
here=$(cd "$(dirname "$0")" && pwd)
. "$here/two_hosts.sh"
tmp=$(mktemp -d /tmp/ooh-migrate-pcfail.XXXXXX)
oohd_pid= wpid= pipe_max=
cleanup() {
    [ -n "$pipe_max" ] && echo "$pipe_max" > /proc/sys/fs/pipe-max-size
    [ -n "$wpid" ] && kill -9 "$wpid" 2> /dev/null
    hosts_down
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2> /dev/null
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

# As in migrate_test.sh: pipes of 819 pages for criu's lazy page server.
need=$((819 * 4096)) cur=$(cat /proc/sys/fs/pipe-max-size)
cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if (((0x$cap_eff >> 24 & 1) == 0 && cur < need)); then
    echo "$need" > /proc/sys/fs/pipe-max-size ||
        skip "post-copy needs CAP_SYS_RESOURCE or fs.pipe-max-size >= $need, and it can't be raised"
    pipe_max=$cur
fi

hosts_up "oohmf$$" > "$tmp/hosts.err" 2>&1 || fail "two hosts: $(tail -n 1 "$tmp/hosts.err")"
"$oohd" --socket "$tmp/oohd.sock" --foreground > "$tmp/oohd.log" 2>&1 &
oohd_pid=$!
for _ in $(seq 100); do [ -S "$tmp/oohd.sock" ] && break; sleep 0.05; done

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
