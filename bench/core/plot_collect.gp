# SPDX-License-Identifier: Apache-2.0
# Plots bench-collect.csv: collect latency vs dirty fraction, one panel per
# size, for oohd, its scan alone and the full pagemap read (log-log).
# Run: gnuplot -e "csv='bench-collect.csv'; png='bench-collect.png'" plot_collect.gp
if (!exists("csv")) csv = 'bench-collect.csv'
if (!exists("png")) png = 'bench-collect.png'
if (!exists("machine")) machine = ''
set terminal pngcairo size 1200,900 font ',10'
set output png
set datafile separator ','
set logscale xy
set grid
set xlabel 'dirty pages (%)'
set ylabel 'collect latency (ms, median)'
set key top left
set xrange [0.05:200]
set multiplot layout 2,2 title 'ooh-bench-collect: oohd vs its scan alone vs a pagemap read'.machine
# the sizes the run measured (--max-mib may stop early)
sizes = system("awk -F, 'NR > 1 && !/^#/ { print $1 }' '".csv."' | uniq | tr '\\n' ' '")
do for [i=1:words(sizes)] {
    s = word(sizes, i) + 0
    set title (s >= 1024 ? sprintf('%d GiB', s / 1024) : sprintf('%d MiB', s))
    plot csv using ($1 == s ? $2 : NaN):4 with linespoints lw 2 pt 7 title 'oohd (socket)', \
         csv using ($1 == s ? $2 : NaN):6 with linespoints lw 2 pt 5 dt 2 title 'scan (no socket)', \
         csv using ($1 == s ? $2 : NaN):7 with linespoints lw 2 pt 9 dt 3 title 'pagemap read'
}
unset multiplot
