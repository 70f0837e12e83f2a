#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# CRIU benchmark: a workload of N MiB that writes a fixed percentage of its
# pages per round (single pages at random, or 256 KiB clusters), checkpointed
# side by side
#   full: `criu dump --leave-running` after every round (what stock CRIU can
#         do on a kernel without soft-dirty: no pre-dump, no --track-mem);
#   ooh:  `criu pre-dump --ooh` after round 0 and every round but the last,
#         `criu dump --ooh --leave-running` after the last (oohd tracks the
#         writes). Both final dumps leave the tree running, so neither pays
#         for tearing down the workload inside its frozen time.
# The summary compares the ooh final dump with the median full dump: frozen
# time (CRIU's own "Frozen time"), pages written to the images, and the
# criu command's wall time. Targets (issue 14): ooh frozen <= 0.1 x full at
# <= 1 % dirty per round, <= 1.0 x at every fraction.
# Prints every dump as it goes, then the summary; writes the rows as CSV
# and, with gnuplot, a PNG of the frozen-time ratios. Not a test: needs
# root, takes minutes, numbers depend on the machine (compare the ratios).
#
# usage: criu_bench.sh BUILD_DIR [--mib "256 1024 2048"] [--rates "0.1 1 5 25 100"]
#          [--patterns "scattered clustered"] [--rounds N] [--csv FILE] [--png FILE]
#          [--images-root DIR]   (default /dev/shm: takes the disk out)
set -euo pipefail

usage() { sed -n '/^# usage:/,/^# *\[--images/s/^# //p' "$0" >&2; exit 2; }
build=${1:-}
[ -n "$build" ] && [ -d "$build" ] || usage
build=$(cd "$build" && pwd)
shift
sizes="256 1024 2048" rates="0.1 1 5 25 100" patterns="scattered clustered" rounds=3
csv=$build/bench-criu.csv png=$build/bench-criu.png root=/dev/shm
while [ $# -gt 0 ]; do
    case "$1" in
        --mib) sizes=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --patterns) patterns=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --csv) csv=$2; shift 2 ;;
        --png) png=$2; shift 2 ;;
        --images-root) root=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "criu_bench: unknown argument $1" >&2; usage ;;
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

start_workload() { # MIB PATTERN PCT
    rm -rf "$tmp/w"; mkdir -p "$tmp/w"
    setsid "$workload" --dir "$tmp/w" --mib "$1" --pattern "$2" --dirty-pct "$3" \
        < /dev/null > "$tmp/workload.log" 2>&1 &
    disown
    for _ in $(seq 1200); do [ -f "$tmp/w/pid" ] && break; sleep 0.05; done
    [ -f "$tmp/w/pid" ] || { echo "criu_bench: the workload did not start:" >&2; cat "$tmp/workload.log" >&2; exit 1; }
    wpid=$(cat "$tmp/w/pid")
}
write_round() { # N
    kill -USR1 "$wpid"
    for _ in $(seq 1200); do [ -f "$tmp/w/round-$1" ] && break; sleep 0.02; done
}
stop_workload() {
    kill -9 "$wpid"
    for _ in $(seq 200); do [ -d "/proc/$wpid" ] || break; sleep 0.05; done
    wpid=
}

# criu ACTION DIR [args]: prints "pages frozen_us wall_us"
measure() {
    local action=$1 dir=$2; shift 2
    mkdir -p "$dir"
    local t0 t1
    t0=$(date +%s%N)
    "$criu" "$action" -t "$wpid" -D "$dir" -o "$action.log" --display-stats "$@" > "$dir/stats" ||
        { echo "criu_bench: criu $action failed, see $dir/$action.log" >&2; tail -n 5 "$dir/$action.log" >&2; exit 1; }
    t1=$(date +%s%N)
    local pages frozen
    pages=$(sed -n 's/.*Memory pages written: \([0-9]*\).*/\1/p' "$dir/stats")
    frozen=$(sed -n 's/.*Frozen time: \([0-9]*\) us.*/\1/p' "$dir/stats")
    echo "${pages:-0} ${frozen:-0} $(((t1 - t0) / 1000))"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "mib,pattern,rate_pct,mode,round,action,pages_written,frozen_ms,wall_ms" > "$csv"
row() { # mib pattern rate mode round action pages frozen_us wall_us
    local fms wms
    fms=$(awk -v u="$8" 'BEGIN { printf "%.2f", u / 1000 }')
    wms=$(awk -v u="$9" 'BEGIN { printf "%.2f", u / 1000 }')
    echo "$1,$2,$3,$4,$5,$6,$7,$fms,$wms" >> "$csv"
    printf "%6s %-9s %6s%%  %-4s %3s %-8s %9s %10s ms %10s ms\n" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$fms" "$wms"
}

load=$(cut -d' ' -f1 /proc/loadavg)
echo "CRIU benchmark: sizes $sizes MiB, patterns $patterns, rates $rates %, $rounds rounds,"
echo "$(nproc) CPUs, load $load at the start, images in $root"
printf "%6s %-9s %7s  %-4s %3s %-8s %9s %13s %13s\n" MiB pattern dirty mode rnd action pages frozen wall
declare -A summary
for mib in $sizes; do
    for pattern in $patterns; do
        for rate in $rates; do
            # Full dumps after each round.
            start_workload "$mib" "$pattern" "$rate"
            fp=() ff=() fw=()
            for r in $(seq "$rounds"); do
                write_round "$r"
                read -r p f w < <(measure dump "$tmp/full-$r" --leave-running)
                row "$mib" "$pattern" "$rate" full "$r" dump "$p" "$f" "$w"
                fp+=("$p") ff+=("$f") fw+=("$w")
                rm -rf "$tmp/full-$r"
            done
            stop_workload

            # The --ooh chain: pre-dump 0 holds everything, then increments.
            start_workload "$mib" "$pattern" "$rate"
            read -r p f w < <(measure pre-dump "$tmp/ooh-0" --ooh -L "$plugdir")
            row "$mib" "$pattern" "$rate" ooh 0 pre-dump "$p" "$f" "$w"
            for r in $(seq "$rounds"); do
                write_round "$r"
                action=pre-dump final=()
                [ "$r" = "$rounds" ] && action=dump final=(--leave-running)
                read -r p f w < <(measure $action "$tmp/ooh-$r" --ooh -L "$plugdir" \
                    --prev-images-dir "../ooh-$((r - 1))" "${final[@]}")
                row "$mib" "$pattern" "$rate" ooh "$r" "$action" "$p" "$f" "$w"
            done
            stop_workload
            rm -rf "$tmp"/ooh-*
            summary[$mib,$pattern,$rate]="$(printf '%s\n' "${ff[@]}" | median) $f \
$(printf '%s\n' "${fp[@]}" | median) $p $(printf '%s\n' "${fw[@]}" | median) $w"
        done
    done
done

summary_csv=${csv%.csv}-summary.csv
echo "mib,pattern,rate_pct,full_frozen_ms,ooh_frozen_ms,frozen_ratio,full_pages,ooh_pages,full_wall_ms,ooh_wall_ms" > "$summary_csv"
echo
echo "Final dump vs full dump (full: median of $rounds dumps; ooh: the chain's final dump)"
printf "%6s %-9s %7s  %13s %13s %7s  %10s %10s  %11s %11s\n" MiB pattern dirty \
    "full frozen" "ooh frozen" ratio "full pages" "ooh pages" "full wall" "ooh wall"
for mib in $sizes; do
    for pattern in $patterns; do
        for rate in $rates; do
            read -r ff of fp op fw ow <<< "${summary[$mib,$pattern,$rate]}"
            awk -v m="$mib" -v pt="$pattern" -v r="$rate" -v ff="$ff" -v of="$of" -v fp="$fp" \
                -v op="$op" -v fw="$fw" -v ow="$ow" -v out="$summary_csv" 'BEGIN {
                printf "%6s %-9s %6s%%  %10.1f ms %10.1f ms %7.3f  %10d %10d  %8.1f ms %8.1f ms\n",
                    m, pt, r, ff / 1000, of / 1000, (ff ? of / ff : 0), fp, op, fw / 1000, ow / 1000
                printf "%s,%s,%s,%.2f,%.2f,%.4f,%d,%d,%.2f,%.2f\n",
                    m, pt, r, ff / 1000, of / 1000, (ff ? of / ff : 0), fp, op, fw / 1000, ow / 1000 >> out }'
        done
    done
done
echo "CSV: $csv (every dump), $summary_csv (the table)"
if command -v gnuplot > /dev/null; then
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    machine="$(nproc) x $cpu, Linux $(uname -r), load $load at the start"
    gnuplot -e "csv='$summary_csv'; png='$png'; machine='$machine'" "$(dirname "$0")/plot_criu.gp"
    echo "PNG: $png"
else
    echo "no plot: gnuplot is not installed (Debian package gnuplot-nox, scripts/deps/bench.txt)"
fi
