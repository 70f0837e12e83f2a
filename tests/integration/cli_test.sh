#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# oohd and oohctl as a user runs them: socket activation (the LISTEN_FDS
# protocol, through systemd-socket-activate), oohctl's commands, its JSON
# output, and its errors and exit codes.
# usage: cli_test.sh OOHD OOHCTL WORKLOAD
set -u
oohd=$1 oohctl=$2 workload=$3
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (tracks another process)"
    exit 77
fi
dir=$(mktemp -d /tmp/ooh-cli.XXXXXX)
sock=$dir/oohd.sock
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
cleanup() {
    kill "${target:-}" "${activator:-}" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# --- socket activation: oohd starts on the first connection
if command -v systemd-socket-activate > /dev/null; then
    systemd-socket-activate --seqpacket -l "$sock" "$oohd" --log-level info 2> "$dir/oohd.log" &
    activator=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    "$oohctl" --socket "$sock" backends > "$dir/backends.txt" || fail "backends through an activated oohd"
    grep -q "uffd-wp" "$dir/backends.txt" || fail "backends lists no uffd-wp: $(cat "$dir/backends.txt")"
    grep -q "using the socket passed by systemd" "$dir/oohd.log" ||
        fail "oohd did not take the socket from LISTEN_FDS: $(cat "$dir/oohd.log")"
else
    echo "note: systemd-socket-activate missing; starting oohd directly"
    "$oohd" --foreground --socket "$sock" 2> "$dir/oohd.log" &
    activator=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
fi

# --- track, collect --json, stats --json, untrack
"$workload" --mib 16 --rate 500 < /dev/null > /dev/null 2>&1 &
target=$!
sleep 0.2
"$oohctl" -s "$sock" track "$target" || fail "track"
sleep 0.3
"$oohctl" -s "$sock" collect "$target" --json > "$dir/collect.json" || fail "collect --json"
python3 - "$dir/collect.json" "$target" <<'PY' || fail "collect --json output: $(head -c 300 "$dir/collect.json")"
import json, sys
text = open(sys.argv[1]).read()
obj = json.loads(text)                       # exactly one JSON object
assert text.count("\n") == 1, "one line"
assert set(obj) == {"pid", "epoch", "page_size", "ranges"}, obj.keys()
assert obj["pid"] == int(sys.argv[2]) and obj["epoch"] == 1 and obj["page_size"] == 4096
prev = 0
for start, end in obj["ranges"]:
    assert isinstance(start, int) and isinstance(end, int)
    assert start % 4096 == 0 and end % 4096 == 0 and prev <= start < end, (start, end)
    prev = end
assert len(obj["ranges"]) > 0, "the workload writes: the set cannot be empty"
PY
"$oohctl" -s "$sock" stats "$target" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["collects"] == 1 and d["alive"] is True, d' ||
    fail "stats --json"
"$oohctl" -s "$sock" untrack "$target" || fail "untrack"

# --- errors: message on stderr, non-zero exit, 2 for usage errors
expect_exit() {
    local want=$1; shift
    "$@" > "$dir/out" 2> "$dir/err"
    local got=$?
    [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want"
    if [ "$want" != 0 ] && [ ! -s "$dir/err" ]; then fail "'$*' printed no error"; fi
}
expect_exit 1 "$oohctl" -s "$sock" collect "$target"          # not tracked any more
grep -q "not tracked" "$dir/err" || fail "collect of an untracked pid: $(cat "$dir/err")"
expect_exit 2 "$oohctl" -s "$sock" frobnicate
expect_exit 2 "$oohctl" -s "$sock" track notapid
expect_exit 2 "$oohctl" -s "$sock" collect 1 --bogus
expect_exit 1 "$oohctl" -s "$dir/nowhere.sock" backends
grep -q "is oohd running" "$dir/err" || fail "connect error does not help: $(cat "$dir/err")"
expect_exit 1 "$oohctl" -s "$sock" track 999999999
expect_exit 0 "$oohctl" --help
expect_exit 0 "$oohd" --help
expect_exit 2 "$oohd" --log-level loud

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all CLI checks passed"
