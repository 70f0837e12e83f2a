#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# CRIU benchmark: a workload of --mib MiB (default 1024) that writes a fixed
# percentage of its pages per round, checkpointed side by side
#   full: `criu dump --leave-running` after every round (what stock CRIU can
#         do on a kernel without soft-dirty: no pre-dump, no --track-mem);
#   ooh:  `criu pre-dump --ooh` after round 0 and every round but the last,
#         `criu dump --ooh --leave-running` after the last (oohd tracks the
#         writes). Both final dumps leave the tree running, so neither pays
#         for tearing down 1 GiB inside its frozen time.
# The summary compares the ooh final dump with the median full dump.
# Prints per round the bytes written to images and CRIU's frozen time, then a
# summary table; writes the rows as CSV. Not a test: needs root, takes a few
# minutes, numbers depend on the machine.
#
# usage: criu_bench.sh BUILD_DIR [--mib N] [--rates "1 5 25"] [--rounds N] [--csv FILE]
#                      [--images-root DIR]   (default /tmp; /dev/shm takes the disk out)
set -euo pipefail

build=${1:?usage: criu_bench.sh BUILD_DIR [--mib N] [--rates LIST] [--rounds N] [--csv FILE]}
build=$(cd "$build" && pwd)
shift
mib=1024 rates="1 5 25" rounds=3 csv=criu_bench.csv root=/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --mib) mib=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --csv) csv=$2; shift 2 ;;
        --images-root) root=$2; shift 2 ;;
        *) echo "criu_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "criu_bench: needs root" >&2; exit 1; }
criu=$build/criu-plugin/criu plugdir=$build/criu-plugin
oohd=$build/oohd/oohd workload=$build/bench/criu/criu_bench_workload
for f in "$criu" "$plugdir/ooh_plugin.so" "$oohd" "$workload"; do
    [ -e "$f" ] || { echo "criu_bench: $f is missing: build first" >&2; exit 1; }
done

tmp=$(mktemp -d "$root/ooh-criu-bench.XXXXXX")
oohd_pid= wpid=
cleanup() {
    [ -n "$wpid" ] && kill -9 "$wpid" 2>/dev/null
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

export OOH_SOCKET=$tmp/oohd.sock
"$oohd" --socket "$OOH_SOCKET" --foreground > "$tmp/oohd.log" 2>&1 &
oohd_pid=$!
for _ in $(seq 100); do [ -S "$OOH_SOCKET" ] && break; sleep 0.05; done

start_workload() { # PCT
    rm -rf "$tmp/w"; mkdir -p "$tmp/w"
    setsid "$workload" --dir "$tmp/w" --mib "$mib" --dirty-pct "$1" < /dev/null > /dev/null 2>&1 &
    disown
    for _ in $(seq 600); do [ -f "$tmp/w/pid" ] && break; sleep 0.05; done
    wpid=$(cat "$tmp/w/pid")
}
write_round() { # N
    kill -USR1 "$wpid"
    for _ in $(seq 600); do [ -f "$tmp/w/round-$1" ] && break; sleep 0.02; done
}
wait_gone() { for _ in $(seq 200); do [ -d "/proc/$1" ] || return 0; sleep 0.05; done; }

# criu ACTION DIR [args]: prints "bytes frozen_us"
measure() {
    local action=$1 dir=$2; shift 2
    mkdir -p "$dir"
    "$criu" "$action" -t "$wpid" -D "$dir" -o "$action.log" --display-stats "$@" > "$dir/stats" ||
        { echo "criu_bench: criu $action failed, see $dir/$action.log" >&2; tail -n 5 "$dir/$action.log" >&2; exit 1; }
    local bytes frozen
    bytes=$(cat "$dir"/pages-*.img 2>/dev/null | wc -c)
    frozen=$(sed -n 's/.*Frozen time: \([0-9]*\) us.*/\1/p' "$dir/stats")
    echo "$bytes ${frozen:-0}"
}

echo "rate_pct,mode,round,action,bytes_written,frozen_ms" > "$csv"
row() { # rate mode round action bytes frozen_us
    local ms
    ms=$(awk -v u="$6" 'BEGIN { printf "%.2f", u / 1000 }')
    echo "$1,$2,$3,$4,$5,$ms" >> "$csv"
    printf "%6s%%  %-5s %5s  %-9s %10.1f MiB  %9s ms\n" "$1" "$2" "$3" "$4" \
        "$(awk -v b="$5" 'BEGIN { print b / 1048576 }')" "$ms"
}

echo "CRIU benchmark: ${mib} MiB workload, $rounds rounds per rate, $(nproc) CPUs, images in $root"
printf "%7s  %-5s %5s  %-9s %14s  %12s\n" rate mode round action written frozen
declare -A full_frozen ooh_frozen full_bytes ooh_bytes
for rate in $rates; do
    # Full dumps after each round.
    start_workload "$rate"
    sum_b=0 frozen_list=()
    for r in $(seq "$rounds"); do
        write_round "$r"
        read -r b f < <(measure dump "$tmp/full-$rate-$r" --leave-running)
        row "$rate" full "$r" dump "$b" "$f"
        frozen_list+=("$f") sum_b=$((sum_b + b))
        rm -rf "$tmp/full-$rate-$r"
    done
    full_frozen[$rate]=$(printf '%s\n' "${frozen_list[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    full_bytes[$rate]=$((sum_b / rounds))
    kill -9 "$wpid"; wait_gone "$wpid"; wpid=

    # The --ooh chain: pre-dump 0 holds everything, then increments.
    start_workload "$rate"
    read -r b f < <(measure pre-dump "$tmp/ooh-$rate-0" --ooh -L "$plugdir")
    row "$rate" ooh 0 pre-dump "$b" "$f"
    sum_b=0
    for r in $(seq "$rounds"); do
        write_round "$r"
        action=pre-dump final=()
        [ "$r" = "$rounds" ] && action=dump final=(--leave-running)
        read -r b f < <(measure $action "$tmp/ooh-$rate-$r" --ooh -L "$plugdir" \
            --prev-images-dir "../ooh-$rate-$((r - 1))" "${final[@]}")
        row "$rate" ooh "$r" "$action" "$b" "$f"
        sum_b=$((sum_b + b))
    done
    ooh_frozen[$rate]=$f ooh_bytes[$rate]=$((sum_b / rounds))
    kill -9 "$wpid"; wait_gone "$wpid"; wpid=
    rm -rf "$tmp"/ooh-"$rate"-*
done

echo
echo "Final-dump freeze time and bytes per round (after round 0), ${mib} MiB:"
printf "%7s  %16s  %16s  %7s  %14s  %14s\n" "dirty/round" "full dump frozen" "--ooh dump frozen" "ratio" "full MiB/round" "ooh MiB/round"
echo "(full: median of the rounds' full dumps; ooh: the final dump of the chain)"
for rate in $rates; do
    awk -v r="$rate" -v ff="${full_frozen[$rate]}" -v of="${ooh_frozen[$rate]}" \
        -v fb="${full_bytes[$rate]}" -v ob="${ooh_bytes[$rate]}" 'BEGIN {
        printf "%10s%%  %13.1f ms  %14.1f ms  %6.3f  %14.1f  %14.1f\n",
            r, ff / 1000, of / 1000, (ff ? of / ff : 0), fb / 1048576, ob / 1048576 }'
done
echo "CSV: $csv"
