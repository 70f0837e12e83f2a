# SPDX-License-Identifier: Apache-2.0
# Plots bench-gc-phoenix.csv (bench/gc/run_bench.sh): per Phoenix-like
# application, total time, collections, max and median pause of the three
# modes side by side.
# usage: gnuplot -e "csv='bench-gc-phoenix.csv'; out='bench-gc-phoenix.png'" plot_phoenix.gp
set datafile separator ','
set terminal pngcairo size 1400,900 font ',10' noenhanced
set output out
set style fill solid 0.85 border -1
set boxwidth 0.26
set grid ytics
set key inside top left
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.08, 0
array titles[4] = ["total time (s)", "collections", "max pause (ms)", "median pause (ms)"]
set multiplot layout 2,2 title "bdwgc 8.2.2 + OOH_VDB on Phoenix-like applications (median run of each mode)"
do for [panel = 1:4] {
    col = panel + 3
    set title titles[panel]
    if (panel == 2) { unset key }
    # Rows are application-major, three modes each; every 3::(m + 1) (the
    # header being line 0) picks mode m, and then $0 is the application.
    plot csv every 3::1 using ($0 - 0.28):col with boxes lc rgb "#888888" title "non-incremental", \
         csv every 3::2 using 0:col:xtic(1) with boxes lc rgb "#d95f02" title "incremental, mprotect", \
         csv every 3::3 using ($0 + 0.28):col with boxes lc rgb "#1b9e77" title "incremental, OoH uffd"
}
unset multiplot
