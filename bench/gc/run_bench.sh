#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The bench-gc target: ooh-bench-gc (GCBench-like), then each Phoenix-like
# application non-incremental, incremental with the mprotect dirty bits and
# incremental with the OoH ones (each prints its table); then one table of
# the applications side by side, BUILD/bench-gc-phoenix.csv, and its plot
# BUILD/bench-gc-phoenix.png (gnuplot, scripts/deps/gc.txt).
#
# usage: run_bench.sh BUILD PLOT_SCRIPT GC_BENCH APP...
# OOH_BENCH_GC_THREADS (4) and OOH_BENCH_GC_REPEAT (5) set the applications'
# threads and runs per mode (the median run is kept).
set -euo pipefail
build=$1 plot=$2 gc_bench=$3
shift 3
threads=${OOH_BENCH_GC_THREADS:-4}
repeat=${OOH_BENCH_GC_REPEAT:-5}
csv=$build/bench-gc-phoenix.csv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$gc_bench" --csv "$build/bench-gc.csv"
echo
for app in "$@"; do
    "$app" --bench --threads "$threads" --repeat "$repeat" --csv "$tmp/$(basename "$app").csv"
    echo
done
{
    head -n 1 "$tmp/$(basename "$1").csv"
    for app in "$@"; do tail -n +2 "$tmp/$(basename "$app").csv"; done
} > "$csv"

echo "Phoenix-like applications, $threads threads, median of $repeat" \
    "(non-incremental / mprotect / OoH uffd)"
echo
echo "| application | total s | collections | max pause ms | median pause ms" \
    "| reading dirty bits ms | pages marked dirty |"
echo "|---|---|---|---|---|---|---|"
awk -F, 'NR > 1 {
        i = (NR - 2) % 3
        s[i] = $4; c[i] = $5; mx[i] = $6; md[i] = $7; rd[i] = $9; dp[i] = $10
        if (i == 2)
            printf "| %s | %.3f / %.3f / %.3f | %d / %d / %d | %.2f / %.2f / %.2f | %.3f / %.3f / %.3f | - / %.2f / %.2f | - / %d / %d |\n",
                $1, s[0], s[1], s[2], c[0], c[1], c[2], mx[0], mx[1], mx[2], md[0], md[1], md[2],
                rd[1], rd[2], dp[1], dp[2]
    }' "$csv"
echo
echo "CSV: $csv"
if command -v gnuplot > /dev/null; then
    gnuplot -e "csv='$csv'; out='$build/bench-gc-phoenix.png'" "$plot"
    echo "plot: $build/bench-gc-phoenix.png"
else
    echo "no plot: gnuplot is not installed (Debian package gnuplot-nox, scripts/deps/gc.txt)"
fi
