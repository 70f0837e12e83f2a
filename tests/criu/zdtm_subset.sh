#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs a memory-relevant subset of CRIU's zdtm suite (test/zdtm.py of the
# patched tree) with `--pre 2` and `ooh` set in CRIU's configuration file
# ($CRIU_CONFIG_FILE, which zdtm's --no-default-config does not disable),
# so every pre-dump and dump decides dump vs. "in parent" through
# ooh_plugin.so and oohd.
#
# usage: zdtm_subset.sh CRIU_SOURCE_DIR_FILE CRIU PLUGIN_SO OOHD LIST [TEST...]
# LIST: one zdtm/static test a line; "skip NAME: reason" lines are reported;
# "flaky NAME: reason" runs NAME like any test but gives it up to
# $flaky_attempts tries, for tests that fail now and then in a plain CRIU dump
# here too (each retry is printed, so a new pattern shows).
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail

srcfile=${1:-} criu=${2:-} plugin=${3:-} oohd=${4:-} list=${5:-}
shift 5 2>/dev/null || true

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (zdtm dumps and restores processes in namespaces)"
for f in "$srcfile" "$criu" "$plugin" "$oohd" "$list"; do
    [ -n "$f" ] && [ -e "$f" ] || skip "missing build output '$f' (patched CRIU not built: see the CRIU part of meson's summary)"
done
tree=$(cat "$srcfile")
[ -f "$tree/test/zdtm.py" ] || skip "no patched CRIU tree at $tree"
# zdtm's helpers run "python3" from PATH; Debian's has python3-protobuf/yaml.
export PATH=/usr/bin:$PATH
/usr/bin/python3 -c 'import yaml, google.protobuf' 2>/dev/null ||
    skip "python3-yaml and python3-protobuf are needed by zdtm.py"

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
    tests=("$@")
else
    mapfile -t tests < <(grep -Ev '^(#|skip |$)' "$list" | sed -E 's/^flaky ([^:]+):.*/\1/')
fi
declare -A is_flaky
while IFS= read -r name; do
    is_flaky[$name]=1
done < <(grep -E '^flaky ' "$list" | sed -E 's/^flaky ([^:]+):.*/\1/')
flaky_attempts=3

work=$(mktemp -d /tmp/ooh-zdtm.XXXXXX)
cleanup() {
    local f p
    # The oohd of CRIU's own pid namespace (zdtm's feature checks) outlives
    # the tests; the others died with their namespaces.
    for f in "$work"/oohd-*.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f")
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$oohd")" ] && kill "$p"
    done
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# Build what zdtm needs in the cached tree, one builder at a time.
(
    flock 9
    cd "$tree" || exit 1
    [ -f lib/pycriu/rpc_pb2.py ] || nice -n 10 make -j2 lib > "$work/make-lib.log" 2>&1 || exit 1
    nice -n 10 make -j2 -C test/zdtm/lib > "$work/make-zdtm-lib.log" 2>&1 || exit 1
    nice -n 10 make -j2 -C test/zdtm/static "${tests[@]}" > "$work/make-tests.log" 2>&1 || exit 1
    # This kind of machine drops CAP_SYS_RESOURCE, without which CRIU can't
    # read the rlimits of a task of another uid: run the tests as root
    # (zdtm's "suid" flag), as stock CRIU needs here too.
    for t in "${tests[@]}"; do
        /usr/bin/python3 - "test/zdtm/static/$t.desc" <<'EOF' || exit 1
import ast, os, sys
p = sys.argv[1]
d = {}
if os.path.exists(p):
    text = "".join(l for l in open(p) if not l.lstrip().startswith("#"))
    d = ast.literal_eval(text.strip() or "{}")
flags = d.get("flags", "").split()
if "suid" not in flags:
    d["flags"] = " ".join(flags + ["suid"])
    open(p, "w").write(repr(d) + "\n")
EOF
    done
) 9> "$tree/.ooh-zdtm.lock" || { echo "FAIL: building zdtm in $tree, see $work"; KEEP_TMP=1; exit 1; }

# CRIU locks TCP connections with iptables by default; these machines have
# no iptables binary ("Iptables configuration failed" at dump), and
# libnftables is built into criu.
printf 'ooh\nlibdir %s\nnetwork-lock nftables\n' "$(cd "$(dirname "$plugin")" && pwd)" > "$work/criu.conf"
export CRIU_CONFIG_FILE=$work/criu.conf
export OOH_ZDTM_CRIU=$(readlink -f "$criu") OOH_ZDTM_OOHD=$(readlink -f "$oohd") OOH_ZDTM_DIR=$work

# Each test takes a few seconds; one that hangs (a criu waiting for a trap
# that never comes) is killed at this deadline and named, long before
# Meson's timeout of the whole suite.
per_test_deadline=${OOH_ZDTM_DEADLINE:-180}
# Tests bind Unix sockets at paths under their own directory, and a socket
# path holds 107 bytes: under a long cache directory, del_standalone_un_*
# fail ("Too long name for socket"). Each test runs in a mount namespace of
# its own where the tree is bind-mounted at a short path (nothing to undo
# if a run is killed).
short="$work/t"
mkdir "$short"
passed=() failed=() failure_lines=()
# One zdtm run of test $1; 0 if it passed.
run_one() {
    local t=$1 rc=0
    timeout -k 10 "$per_test_deadline" unshare --mount --propagation private \
        /bin/sh -c 'mount --bind "$1" "$2" && cd "$2/test" && shift 2 && exec "$@"' sh \
        "$tree" "$short" /usr/bin/python3 zdtm.py run -t "zdtm/static/$t" --pre 2 -f h \
        --criu-bin "$here/zdtm_criu_wrapper.sh" > "$work/$t.log" 2>&1 || rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        echo "TIMEOUT $t: still running after $per_test_deadline s, killed" >> "$work/$t.log"
    fi
    [ $rc = 0 ] && grep -q "Test zdtm/static/$t PASS" "$work/$t.log"
}
# The lines of a failed run's log that say why.
why_failed() {
    grep -E "Error|FAIL|ERR:|TIMEOUT|ooh:" "$1" | grep -Ev 'RLIMIT_NOFILE|^-+ grep Error' | tail -n 8
}
for t in "${tests[@]}"; do
    start=$(date +%s)
    attempts=1
    [ -n "${is_flaky[$t]:-}" ] && attempts=$flaky_attempts
    ok=0
    for ((a = 1; a <= attempts; a++)); do
        if run_one "$t"; then ok=1; break; fi
        if [ $a -lt $attempts ]; then
            mv "$work/$t.log" "$work/$t.attempt$a.log"
            echo "RETRY $t: attempt $a of $attempts failed (listed as flaky); $work/$t.attempt$a.log:"
            why_failed "$work/$t.attempt$a.log" | sed 's/^/    /'
            KEEP_TMP=1
        fi
    done
    if [ $ok = 1 ]; then
        passed+=("$t")
        echo "PASS $t ($(( $(date +%s) - start )) s$([ $a -gt 1 ] && echo ", attempt $a"))"
    else
        failed+=("$t")
        echo "FAIL $t; last lines of $work/$t.log:"
        why_failed "$work/$t.log"
        failure_lines+=("FAIL $t: $(why_failed "$work/$t.log" | tail -n 1)")
        KEEP_TMP=1
    fi
done
grep -E '^skip ' "$list" | sed 's/^skip /SKIPPED /'
# Meson shows only the last lines of a long log: name the failures again here.
[ ${#failed[@]} -eq 0 ] || printf '%s\n' "${failure_lines[@]}" "logs kept in $work"
echo "zdtm --pre 2 with ooh: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
