#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# oohctl migrate's bad input, without root or CRIU: usage errors exit 2
# before anything runs; a destination command that fails exits 1, names
# the step, and leaves the target running.
#
# usage: usage_test.sh OOHCTL
set -uo pipefail

oohctl=${1:?usage: usage_test.sh OOHCTL}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/ooh-migrate-usage.XXXXXX)
target=
cleanup() {
    [ -n "$target" ] && kill -9 "$target" 2> /dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

sleep 600 &
target=$!
disown
ok=(-t "$target" --to 127.0.0.1 -D "$tmp/img" --dest-dir "$tmp/dst" --dest-exec env)

expect() { # STATUS MESSAGE_PART ARGS...
    local want=$1 msg=$2 rc
    shift 2
    "$oohctl" migrate "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    [ "$rc" = "$want" ] || fail "oohctl migrate $* exited $rc, not $want: $(cat "$tmp/err")"
    grep -qF -- "$msg" "$tmp/err" "$tmp/out" || fail "oohctl migrate $*: no '$msg' in: $(cat "$tmp/err")"
}

expect 0 "Usage: oohctl migrate" --help
expect 2 "are required" -t "$target" --to 127.0.0.1 -D "$tmp/img" --dest-dir "$tmp/dst"
expect 2 "are required" --to 127.0.0.1 -D "$tmp/img" --dest-dir "$tmp/dst" --dest-exec env
expect 2 "absolute path" "${ok[@]}" --dest-dir relative
expect 2 "--port wants 1..65535" "${ok[@]}" --port 70000
expect 2 "--max-rounds wants 0..1000" "${ok[@]}" -n 1001
expect 2 "--min-shrink wants 0..100" "${ok[@]}" --min-shrink 101
expect 2 "bad pid" "${ok[@]}" -t 0
[ -e "$tmp/img" ] && fail "a usage error created $tmp/img"
expect 1 "no such process" -t 999999999 --to 127.0.0.1 -D "$tmp/img" --dest-dir "$tmp/dst" --dest-exec env
[ -e "$tmp/dst" ] && fail "a missing pid still prepared the destination"

# A destination that can't be reached: the first step fails, named.
expect 1 "stopped at prepare destination" -t "$target" --to 127.0.0.1 -D "$tmp/img" \
    --dest-dir "$tmp/dst" --dest-exec false
kill -0 "$target" || fail "the target is gone after a failed migration"
state=$(awk '/^State:/ { print $2 }' "/proc/$target/status")
[ "$state" = S ] || fail "the target is in state $state after a failed migration"
echo "PASS: usage errors exit 2 before anything runs; an unreachable destination exits 1, named, the target untouched"
