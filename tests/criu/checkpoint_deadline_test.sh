#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl checkpoint --step-timeout` against a fake criu that hangs the way
# CRIU 4.1.1 does on machines that never deliver debug-register traps: it
# stops the target, starts a helper, logs compel's last line
# (`pie: PID: new_sp=... ip ...`) and sleeps. oohctl must kill the step and
# its helper at the deadline, name the step and that line, and leave the
# target running; a failing step and a SIGTERM to oohctl are named too,
# and so is how the pre-dumps ended (converged, or the round limit).
# Needs neither root nor CRIU.
#
# usage: checkpoint_deadline_test.sh OOHCTL
set -uo pipefail

oohctl=${1:-}
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && sed 's/^/    /' "$tmp/err"; exit 1; }

[ -n "$oohctl" ] && [ -x "$oohctl" ] || { echo "FAIL: no oohctl at '$oohctl'"; exit 1; }

tmp=$(mktemp -d /tmp/ooh-deadline.XXXXXX)
target=
cleanup() {
    [ -n "$target" ] && kill -9 "$target" 2>/dev/null
    [ -f "$tmp/helper" ] && kill -9 "$(cat "$tmp/helper")" 2>/dev/null
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

# The fake criu: succeeds with CRIU's --display-stats lines, except for the
# action named in FAKE_HANG (hangs) or FAKE_FAIL (fails with an Error line).
cat > "$tmp/criu" <<'EOF'
#!/bin/bash
action=$1 dir= log= pid=
shift
while [ $# -gt 0 ]; do
    case $1 in
        -D) dir=$2; shift ;;
        -o) log=$2; shift ;;
        -t) pid=$2; shift ;;
    esac
    shift
done
echo "(00.000010) Version: fake criu for the deadline test" > "$dir/$log"
if [ "$action" = "${FAKE_HANG:-}" ]; then
    sleep 1000 < /dev/null > /dev/null 2>&1 &
    echo $! > "$FAKE_STATE/helper"
    kill -STOP "$pid"
    echo "(00.012345) pie: $pid: new_sp=0x7f2a1c3fe000 ip 0x7f2a1c400044" >> "$dir/$log"
    sleep 1000
fi
if [ "$action" = "${FAKE_FAIL:-}" ]; then
    echo "(00.020000) Error (criu/sockets.c:628): sockets: Can't get 1:16 opt: Operation not supported" >> "$dir/$log"
    echo "(00.020100) Dumping finished with error" >> "$dir/$log"
    exit 1
fi
printf 'Freezing time: 120 us\nFrozen time: 3400 us\nMemory pages skipped from parent: 0\nMemory pages written: 100\n'
EOF
chmod +x "$tmp/criu"
export FAKE_STATE=$tmp

start_target() {
    sleep 300 < /dev/null > /dev/null 2>&1 &
    target=$!
    disown
}

state_of() { awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# Runs oohctl checkpoint against the fake criu; sets rc and secs.
checkpoint() {
    local t0=$SECONDS
    rm -rf "$tmp/img" "$tmp/helper"
    timeout -k 5 60 "$oohctl" checkpoint -t "$target" -D "$tmp/img" --criu "$tmp/criu" \
        --step-timeout 2 "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    secs=$((SECONDS - t0))
    [ "$rc" != 124 ] || fail "oohctl checkpoint itself hung (killed after 60 s)"
}

# The target must be alive, not stopped, and the fake criu's helper gone.
check_left_running() { # WHAT
    [ -d "/proc/$target" ] || fail "$1: the target is gone"
    case $(state_of "$target") in
        T|t) fail "$1: the target was left stopped ($(state_of "$target"))" ;;
    esac
    grep -q "pid $target left running" "$tmp/err" || fail "$1: oohctl did not say the target runs"
    local helper
    helper=$(cat "$tmp/helper" 2>/dev/null)
    [ -n "$helper" ] || fail "$1: the fake criu did not start its helper"
    for _ in $(seq 50); do [ -d "/proc/$helper" ] || break; sleep 0.05; done
    [ -d "/proc/$helper" ] && fail "$1: the step's helper (pid $helper) survived the kill"
    return 0
}

start_target

# 1. The first pre-dump hangs.
FAKE_HANG=pre-dump checkpoint
[ "$rc" = 1 ] || fail "hung pre-dump: exit status $rc, expected 1"
[ "$secs" -le 15 ] || fail "hung pre-dump: oohctl took $secs s for a 2 s deadline"
grep -q "pre-dump 1 did not finish within 2 s" "$tmp/err" || fail "hung pre-dump: step not named"
grep -q "pie: $target: new_sp=" "$tmp/err" || fail "hung pre-dump: last log line not shown"
grep -q "hardware-breakpoint trap" "$tmp/err" || fail "hung pre-dump: no explanation of the wait"
check_left_running "hung pre-dump"
echo "hung pre-dump 1: killed after 2 s, named, target left running:"
sed 's/^/    /' "$tmp/err"

# 2. The pre-dump works, the final dump hangs.
FAKE_HANG=dump checkpoint --max-rounds 1
[ "$rc" = 1 ] || fail "hung dump: exit status $rc, expected 1"
grep -q "^pre 1 " "$tmp/out" || fail "hung dump: the pre-dump before it was not reported"
grep -q "^round limit hit after 1 pre-dump (--max-rounds 1)" "$tmp/out" ||
    fail "hung dump: the round limit was not named"
grep -q "dump did not finish within 2 s" "$tmp/err" || fail "hung dump: step not named"
check_left_running "hung dump"
echo "hung dump: killed, named, target left running"

# 3. A step that fails is named with CRIU's last error.
FAKE_FAIL=pre-dump checkpoint
[ "$rc" = 1 ] || fail "failed pre-dump: exit status $rc, expected 1"
grep -q "pre-dump 1 failed: .* exited with status 1" "$tmp/err" || fail "failed pre-dump: not named"
grep -q "its last error: .*Can't get 1:16 opt" "$tmp/err" || fail "failed pre-dump: error not shown"
echo "failed pre-dump 1: named with its last error"

# 4. SIGTERM to oohctl while a step hangs: the step goes too, target runs.
rm -rf "$tmp/img" "$tmp/helper"
FAKE_HANG=pre-dump "$oohctl" checkpoint -t "$target" -D "$tmp/img" --criu "$tmp/criu" \
    --step-timeout 60 > "$tmp/out" 2> "$tmp/err" &
ctl=$!
for _ in $(seq 100); do grep -q new_sp "$tmp/img/1/pre-dump.log" 2>/dev/null && break; sleep 0.05; done
kill -TERM "$ctl"
timeout 30 tail --pid="$ctl" -f /dev/null || fail "oohctl did not end after SIGTERM"
wait "$ctl"
rc=$?
[ "$rc" = $((128 + 15)) ] || fail "SIGTERM: exit status $rc, expected 143"
grep -q "pre-dump 1 interrupted by" "$tmp/err" || fail "SIGTERM: step not named"
check_left_running "SIGTERM"
echo "SIGTERM during pre-dump 1: step killed, target left running"

# 5. How the pre-dumps ended: "converged" only when they did. The fake
# criu writes 100 pages every round.
checkpoint --max-rounds 4
[ "$rc" = 0 ] || fail "converging run: exit status $rc, expected 0"
grep -q "^converged after 2 pre-dumps (round 2 wrote 100 pages, at most the threshold of 256)" \
    "$tmp/out" || fail "converging run: convergence not reported"
grep -q "^final dump: " "$tmp/out" || fail "converging run: no final dump"
checkpoint --max-rounds 3 --threshold 10 --min-shrink 0
[ "$rc" = 0 ] || fail "round-limit run: exit status $rc, expected 0"
grep -q "^round limit hit after 3 pre-dumps (--max-rounds 3)" "$tmp/out" ||
    fail "round-limit run: the round limit was not named"
grep -q "converged" "$tmp/out" && fail "round-limit run: said converged: $(grep converged "$tmp/out")"
grep -q "^final dump: " "$tmp/out" || fail "round-limit run: no final dump"
echo "end of pre-dumps: converged named as such, the round limit as the round limit"

echo "PASS: hung and failed steps are killed and named, the target keeps running"
