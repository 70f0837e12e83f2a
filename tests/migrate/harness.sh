#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# What the migration tests share, sourced after `set -uo pipefail`:
#
#   migrate_test_init NAME "$@"   the arguments OOHCTL CRIU PLUGIN_SO OOHD
#                                 WORKLOAD (made absolute: the destination's
#                                 commands start in its own root directory),
#                                 skip (exit 77) without root, the pieces or
#                                 the tools; $tmp; the two hosts up (prefix
#                                 NAME, two_hosts.sh); cleanup on exit
#   start_oohd                    oohd on $tmp/oohd.sock (again after a kill)
#   allow_post_copy               fs.pipe-max-size raised for criu's lazy
#                                 page server where needed, put back on exit
#
# A test may define test_cleanup, run first on exit; cleanup kills $wpid.

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

migrate_test_init() {
    local name=$1
    shift
    oohctl=${1:-} criu=${2:-} plugin=${3:-} oohd=${4:-} workload=${5:-}
    [ "$(id -u)" = 0 ] || skip "needs root (network namespaces, CRIU)"
    local f t v
    for f in "$oohctl" "$criu" "$plugin" "$oohd" "$workload"; do
        [ -n "$f" ] && [ -e "$f" ] || skip "missing build output '$f' (patched CRIU not built: see the CRIU part of meson's summary)"
    done
    for t in ip nsenter unshare tar; do
        command -v "$t" > /dev/null || skip "needs $t"
    done
    for v in oohctl criu plugin oohd workload; do
        declare -g "$v=$(readlink -f "${!v}")"
    done
    here=$(cd "$(dirname "$0")" && pwd)
    . "$here/two_hosts.sh"
    tmp=$(mktemp -d "/tmp/ooh-migrate-$name.XXXXXX")
    oohd_pid= wpid= pipe_max=
    trap migrate_test_cleanup EXIT
    hosts_up "ooh$name$$" > "$tmp/hosts.err" 2>&1 || fail "two hosts: $(tail -n 1 "$tmp/hosts.err")"
}

migrate_test_cleanup() {
    declare -F test_cleanup > /dev/null && test_cleanup
    [ -n "$pipe_max" ] && echo "$pipe_max" > /proc/sys/fs/pipe-max-size
    [ -n "$wpid" ] && kill -9 "$wpid" 2> /dev/null
    hosts_down
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2> /dev/null
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}

start_oohd() {
    rm -f "$tmp/oohd.sock"
    "$oohd" --socket "$tmp/oohd.sock" --foreground >> "$tmp/oohd.log" 2>&1 &
    oohd_pid=$!
    for _ in $(seq 100); do [ -S "$tmp/oohd.sock" ] && return 0; sleep 0.05; done
    fail "oohd did not start"
}

# criu's lazy page server needs pipes of 819 pages: beyond fs.pipe-max-size
# that takes CAP_SYS_RESOURCE, which a container may lack (this machine's
# does). Raised for the test, put back on exit.
allow_post_copy() {
    local need=$((819 * 4096)) cur cap_eff
    cur=$(cat /proc/sys/fs/pipe-max-size)
    cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
    if (((0x$cap_eff >> 24 & 1) == 0 && cur < need)); then
        echo "$need" > /proc/sys/fs/pipe-max-size ||
            skip "post-copy needs CAP_SYS_RESOURCE or fs.pipe-max-size >= $need, and it can't be raised"
        pipe_max=$cur
    fi
}
