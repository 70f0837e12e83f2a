# SPDX-License-Identifier: Apache-2.0
# Plots bench-criu-summary.csv: the --ooh final dump's frozen time as a
# fraction of a full dump's, and both frozen times, vs the dirty fraction
# per round; one line per workload size and write pattern.
# Run: gnuplot -e "csv='bench-criu-summary.csv'; png='bench-criu.png'" plot_criu.gp
if (!exists("csv")) csv = 'bench-criu-summary.csv'
if (!exists("png")) png = 'bench-criu.png'
if (!exists("machine")) machine = ''
set terminal pngcairo size 1400,600 font ',10'
set output png
set datafile separator ','
set grid
set logscale x
set xlabel 'pages written per round (%)'
set xrange [0.05:200]
set key top left
# (size, pattern) pairs in the order measured
configs = system("awk -F, 'NR > 1 { print $1 \"/\" $2 }' '".csv."' | uniq | tr '\\n' ' '")
cfg(i) = word(configs, i)
label(i) = sprintf('%s MiB %s', substr(cfg(i), 1, strstrt(cfg(i), '/') - 1), substr(cfg(i), strstrt(cfg(i), '/') + 1, 99))
match(i, m, p) = (sprintf('%d/%s', m, p) eq cfg(i))
set multiplot layout 1,2 title "criu dump --ooh (final dump of a pre-dump chain) vs a full criu dump\n".machine
set title 'frozen time, --ooh / full'
set logscale y
set ylabel 'ratio'
set yrange [0.005:5]
plot for [i=1:words(configs)] csv using (match(i, $1, stringcolumn(2)) ? $3 : NaN):6 \
         with linespoints lw 2 title label(i), \
     0.1 with lines dt 2 lc rgb 'black' title 'target at <= 1 %: 0.1', \
     1.0 with lines dt 3 lc rgb 'red' title 'target everywhere: 1.0'
set title 'frozen time (ms)'
set yrange [*:*]
set ylabel 'ms'
plot for [i=1:words(configs)] csv using (match(i, $1, stringcolumn(2)) ? $3 : NaN):5 \
         with linespoints lw 2 title label(i).' --ooh', \
     for [i=1:words(configs)] csv using (match(i, $1, stringcolumn(2)) ? $3 : NaN):4 \
         with linespoints lw 1 dt 2 title label(i).' full'
unset multiplot
