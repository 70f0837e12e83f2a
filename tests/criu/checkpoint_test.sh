#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl checkpoint --restore` on the chain workload: pre-dumps until the
# dirty set converges (or the round limit), dumps, restores; the restored
# workload then verifies every page it wrote, asked by oohctl's
# --verify-command. Every step has a deadline far below Meson's: a hung
# criu fails the test with oohctl's diagnosis instead of a Meson timeout.
#
# usage: checkpoint_test.sh OOHCTL CRIU PLUGIN_SO OOHD WORKLOAD
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail

oohctl=${1:-} criu=${2:-} plugin=${3:-} oohd=${4:-} workload=${5:-}
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (CRIU dumps and restores processes)"
for f in "$oohctl" "$criu" "$plugin" "$oohd" "$workload"; do
    [ -n "$f" ] && [ -e "$f" ] || skip "missing build output '$f' (patched CRIU not built: see the CRIU part of meson's summary)"
done

tmp=$(mktemp -d /tmp/ooh-checkpoint.XXXXXX)
oohd_pid= wpid=
cleanup() {
    [ -n "$wpid" ] && kill -9 "$wpid" 2>/dev/null
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2>/dev/null
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

"$oohd" --socket "$tmp/oohd.sock" --foreground > "$tmp/oohd.log" 2>&1 &
oohd_pid=$!
for _ in $(seq 100); do [ -S "$tmp/oohd.sock" ] && break; sleep 0.05; done

mkdir -p "$tmp/w"
setsid "$workload" --dir "$tmp/w" --ops 5 < /dev/null > "$tmp/workload.log" 2>&1 &
disown
for _ in $(seq 200); do [ -f "$tmp/w/pid-main" ] && break; sleep 0.05; done
wpid=$(cat "$tmp/w/pid-main") || fail "workload did not start"
sleep 0.3

# The restored workload checks its pages on SIGUSR1 and exits; its report
# ("OK N pages match" or "FAIL ...") is the verify command's answer.
cat > "$tmp/verify.sh" <<EOF
#!/bin/bash
pid=\$OOH_RESTORED_PID
kill -USR1 "\$pid" || exit 1
for _ in \$(seq 300); do [ -f "$tmp/w/result-\$pid" ] && break; sleep 0.05; done
[ -f "$tmp/w/result-\$pid" ] || { echo "pid \$pid did not report its verification"; exit 1; }
sed 's/^OK //' "$tmp/w/result-\$pid"
grep -q '^OK' "$tmp/w/result-\$pid"
EOF
chmod +x "$tmp/verify.sh"

# 4 rounds + dump + restore + verify at 30 s each stay under Meson's 300 s.
"$oohctl" checkpoint -t "$wpid" -D "$tmp/img" --criu "$criu" -L "$(dirname "$plugin")" \
    -s "$tmp/oohd.sock" --max-rounds 4 --interval 200 --step-timeout 30 \
    --restore --verify-command "$tmp/verify.sh" > "$tmp/out" 2> "$tmp/err"
rc=$?
cat "$tmp/out" "$tmp/err"
[ "$rc" = 0 ] || fail "oohctl checkpoint failed (status $rc): $(grep -m1 'oohctl checkpoint: ' "$tmp/err")"
grep -q "^pre 1 " "$tmp/out" && grep -q "^dump " "$tmp/out" && grep -q "^restored pid $wpid" "$tmp/out" ||
    fail "oohctl checkpoint did not report its rounds, dump and restore"
grep -Eq "^(converged|round limit hit) after [0-9]+ pre-dumps? \(" "$tmp/out" ||
    fail "oohctl checkpoint did not say how the pre-dumps ended"
[ -f "$tmp/img/dump/inventory.img" ] || fail "no final dump images"
grep -Eq "^restore verified: [0-9]+ pages match$" "$tmp/out" ||
    fail "oohctl checkpoint did not report a verified restore"
wpid=
echo "PASS: oohctl checkpoint pre-dumped, dumped, restored and verified every page"
