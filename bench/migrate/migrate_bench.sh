#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Migration benchmark: a service of --sizes MiB (ooh-sample-workload
# --uniform, writing a percentage of its pages per second) migrated between
# two hosts on this machine (tests/migrate/two_hosts.sh) with oohctl
# migrate, side by side in one run:
#   one-shot: -n 0, one criu dump to the destination's page server, the
#             other images, criu restore (what stock CRIU does without
#             soft-dirty: no pre-dump);
#   ooh:      pre-dumps with --ooh to the page server until the dirty set
#             converges (oohctl's default policy), then the final dump;
#   ooh-pc:   the same with --post-copy: the final dump's pages go after the
#             restore (userfaultfd on the destination), the pre-dumps' pages
#             are restored from their images as with ooh;
#   1shot-pc: -n 0 --post-copy: no pre-dump, every page after the restore.
# A post-copy migration's downtime ends when the restored tree runs; the
# source stays (stopped) until its last page went: post-copy ms, from the
# start of the final dump.
# Prints each migration's downtime (source frozen -> destination running),
# its parts and the bytes sent, then a table of the medians of --reps runs,
# ooh against one-shot; writes CSV (a row per run) and, with gnuplot, a PNG. Not a test: needs root, takes minutes, and the numbers
# depend on the machine and its load.
#
# usage: migrate_bench.sh BUILD_DIR TWO_HOSTS_SH PLOT_GP [--sizes "256 1024"]
#          [--rates "0.5 1 5"] [--reps 3] [--csv FILE] [--png FILE] [--images-root DIR]
set -euo pipefail

build=${1:?usage: migrate_bench.sh BUILD_DIR TWO_HOSTS_SH PLOT_GP [options]}
build=$(cd "$build" && pwd)
two_hosts=$(readlink -f "${2:?}") plot=$(readlink -f "${3:?}")
shift 3
sizes="256 1024" rates="0.5 1 5" reps=3 csv=$build/bench-migrate.csv png=$build/bench-migrate.png root=/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --csv) csv=$2; shift 2 ;;
        --png) png=$2; shift 2 ;;
        --images-root) root=$2; shift 2 ;;
        *) echo "migrate_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "migrate_bench: needs root" >&2; exit 1; }
oohctl=$build/oohctl/oohctl criu=$build/criu-plugin/criu plugdir=$build/criu-plugin
oohd=$build/oohd/oohd workload=$build/tests/progs/ooh-sample-workload
for f in "$oohctl" "$criu" "$plugdir/ooh_plugin.so" "$oohd" "$workload"; do
    [ -e "$f" ] || { echo "migrate_bench: $f is missing: build first (with -Dcriu=enabled)" >&2; exit 1; }
done

. "$two_hosts"
tmp=$(mktemp -d "$root/ooh-migrate-bench.XXXXXX")
load=$(cut -d' ' -f1 /proc/loadavg)
oohd_pid= wpid= pipe_max=
cleanup() {
    [ -n "$pipe_max" ] && echo "$pipe_max" > /proc/sys/fs/pipe-max-size
    [ -n "$wpid" ] && kill -9 "$wpid" 2> /dev/null
    hosts_down
    [ -n "$oohd_pid" ] && kill "$oohd_pid" 2> /dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
# criu's lazy page server needs pipes of 819 pages: CAP_SYS_RESOURCE or a
# large enough fs.pipe-max-size (raised for the run, put back after).
need=$((819 * 4096)) cur=$(cat /proc/sys/fs/pipe-max-size)
cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if (((0x$cap_eff >> 24 & 1) == 0 && cur < need)); then
    echo "$need" > /proc/sys/fs/pipe-max-size && pipe_max=$cur
fi
hosts_up "oohmb$$" || { echo "migrate_bench: two hosts: see above" >&2; exit 1; }

export OOH_SOCKET=$tmp/oohd.sock
"$oohd" --socket "$OOH_SOCKET" --foreground > "$tmp/oohd.log" 2>&1 &
oohd_pid=$!
for _ in $(seq 100); do [ -S "$OOH_SOCKET" ] && break; sleep 0.05; done

start_service() { # MIB PCT_PER_SEC
    local rate
    rate=$(awk -v m="$1" -v p="$2" 'BEGIN { printf "%d", m * 256 * p / 100 }')
    $src_exec setsid "$workload" --mib "$1" --rate "$rate" --uniform --report "$tmp/report" \
        < /dev/null > "$tmp/workload.log" 2>&1 &
    wpid=$!
    disown
    # It stamps all its pages before it handles SIGUSR1: wait for them.
    local kb=$(($1 * 1024 * 99 / 100)) rss=0
    for _ in $(seq 600); do
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$wpid/status" 2> /dev/null || echo 0)
        [ "${rss:-0}" -ge "$kb" ] && break
        sleep 0.05
    done
    [ "${rss:-0}" -ge "$kb" ] || { echo "migrate_bench: the service did not start" >&2; exit 1; }
    sleep 1 # a steady write rate before the first round
}

echo "size_mib,dirty_pct_per_s,mode,rep,rounds,pre_dump_mib,dump_mib,sent_mib,dump_frozen_ms,restore_ms,downtime_ms,downtime_max_ms,total_s,post_copy_ms" > "$csv"
echo "Migration benchmark: $(nproc) CPUs, load $load at the start, images in $root, $reps runs each"
printf "%6s %6s  %-8s %3s %6s %9s %9s %9s %10s %10s %11s %8s %13s\n" MiB "%/s" mode run rounds "pre MiB" \
    "dump MiB" "sent MiB" "frozen ms" "restore ms" "downtime ms" "total s" "post-copy ms"
for mib in $sizes; do
    for rate in $rates; do
        # The modes alternate, so a change in the machine's load hits both.
        for rep in $(seq "$reps"); do
            for mode in one-shot ooh ooh-pc 1shot-pc; do
                start_service "$mib" "$rate"
                rm -rf "$tmp/src" "$tmp/dst"
                args=()
                case $mode in
                    one-shot) args=(-n 0) ;;
                    ooh-pc) args=(--post-copy "$src_addr") ;;
                    1shot-pc) args=(-n 0 --post-copy "$src_addr") ;;
                esac
                t0=$(date +%s.%N)
                $src_exec "$oohctl" migrate -t "$wpid" --to "$dst_addr" -D "$tmp/src" \
                    --dest-dir "$tmp/dst" --dest-exec "$dst_exec" --criu "$criu" -L "$plugdir" \
                    "${args[@]}" > "$tmp/out" 2> "$tmp/err" ||
                    { cat "$tmp/out" "$tmp/err" >&2; echo "migrate_bench: migration failed" >&2; exit 1; }
                t1=$(date +%s.%N)
                pid=$wpid wpid=
                $dst_exec "$workload" --verify "$pid" --report "$tmp/report" > "$tmp/verify" ||
                    { echo "migrate_bench: the migrated service failed its check: $(cat "$tmp/verify")" >&2; exit 1; }
                $dst_exec kill -9 "$pid"
                s=$(grep '^summary ' "$tmp/out")
                val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$s"; }
                row=$(awk -v m="$mib" -v r="$rate" -v mode="$mode" -v rep="$rep" -v n="$(val rounds)" \
                    -v pp="$(val pre_dump_pages)" -v dp="$(val dump_pages)" -v b="$(val bytes_sent)" \
                    -v f="$(val dump_frozen_ms)" -v rs="$(val restore_ms)" -v d="$(val downtime_ms)" \
                    -v dm="$(val downtime_max_ms)" -v t0="$t0" -v t1="$t1" -v pc="$(val post_copy_done_ms)" 'BEGIN {
                    # post-copy: the source stays frozen until its pages went (no frozen time).
                    printf "%s,%s,%s,%d,%d,%.1f,%.1f,%.1f,%s,%.1f,%.1f,%.1f,%.2f,%s", m, r, mode, rep, n,
                        pp / 256, dp / 256, b / 1048576, f, rs, d, dm, t1 - t0, pc }')
                echo "$row" >> "$csv"
                IFS=, read -r _ _ _ _ n pre dmp snt frz rst dwn _ tot pcd <<< "$row"
                printf "%6s %6s  %-8s %3s %6s %9s %9s %9s %10s %10s %11s %8s %13s\n" "$mib" "$rate" "$mode" \
                    "$rep" "$n" "$pre" "$dmp" "$snt" "${frz:--}" "$rst" "$dwn" "$tot" "${pcd:--}"
                rm -rf "$tmp/src" "$tmp/dst"
            done
        done
    done
done

# Medians per size, rate and mode (CSV columns 9, 10, 11 and 8).
median() { # SIZE RATE MODE COLUMN
    awk -F, -v m="$1" -v r="$2" -v mode="$3" -v col="$4" \
        'NR > 1 && $1 == m && $2 == r && $3 == mode { print $col }' "$csv" |
        sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "Medians of $reps runs; ratio = ooh / one-shot; frozen = the final dump's freeze, restore = criu"
echo "restore on the destination, downtime = source frozen -> destination running; pc = post-copy"
echo "(ooh-pc, 1shot-pc: downtime, then its ratio to one-shot's):"
printf "%6s %6s  %-21s %-21s %-27s %7s  %-17s  %-15s  %-15s\n" MiB "%/s" "frozen ms (1-shot/ooh)" \
    "restore ms (1-shot/ooh)" "downtime ms (1-shot/ooh)" ratio "sent MiB (1-shot/ooh)" \
    "ooh-pc ms ratio" "1shot-pc ms ratio"
for mib in $sizes; do
    for rate in $rates; do
        awk -v m="$mib" -v r="$rate" \
            -v fa="$(median "$mib" "$rate" one-shot 9)" -v fb="$(median "$mib" "$rate" ooh 9)" \
            -v ra="$(median "$mib" "$rate" one-shot 10)" -v rb="$(median "$mib" "$rate" ooh 10)" \
            -v da="$(median "$mib" "$rate" one-shot 11)" -v db="$(median "$mib" "$rate" ooh 11)" \
            -v sa="$(median "$mib" "$rate" one-shot 8)" -v sb="$(median "$mib" "$rate" ooh 8)" \
            -v dc="$(median "$mib" "$rate" ooh-pc 11)" -v dd="$(median "$mib" "$rate" 1shot-pc 11)" 'BEGIN {
            printf "%6s %6s  %9.1f / %9.1f %9.1f / %9.1f %11.1f / %11.1f %8.3f  %7.1f / %7.1f  %7.1f %7.3f  %7.1f %7.3f\n",
                m, r, fa, fb, ra, rb, da, db, db / da, sa, sb, dc, dc / da, dd, dd / da }'
    done
done
echo "CSV: $csv"
if command -v gnuplot > /dev/null; then
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    machine=" ($(nproc) x $cpu, Linux $(uname -r), load $load at the start)"
    gnuplot -e "csv='$csv'; png='$png'; machine='$machine'" "$plot"
    echo "plot written to $png"
else
    echo "gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
fi
