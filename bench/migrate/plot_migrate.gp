# SPDX-License-Identifier: Apache-2.0
# Plots bench-migrate.csv: the final freeze, downtime and bytes sent against the service's
# dirty rate, a point per run, a colour per size and mode (one-shot vs
# iterative --ooh; on the downtime also both with --post-copy).
# Run: gnuplot -e "csv='bench-migrate.csv'; png='bench-migrate.png'" plot_migrate.gp
if (!exists("csv")) csv = 'bench-migrate.csv'
if (!exists("png")) png = 'bench-migrate.png'
if (!exists("machine")) machine = ''
set terminal pngcairo size 1500,500 font ',10'
set output png
set datafile separator ','
set grid
set logscale xy
set xrange [0.3:8]
set xtics add (0.5, 2, 5)
set xlabel 'pages written per second (% of the service)'
set key top left
sizes = system("awk -F, 'NR > 1 { print $1 }' '".csv."' | sort -un | tr '\\n' ' '")
set multiplot layout 1,3 title 'oohctl migrate: one-shot dump vs iterative pre-dump --ooh'.machine
set title "the final dump's freeze (the source stopped)"
set ylabel 'ms'
plot for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'one-shot' ? $2 : NaN):9 \
        with points pt 5 ps 1.2 title sprintf('one-shot, %s MiB', word(sizes, i)), \
     for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'ooh' ? $2 : NaN):9 \
        with points pt 7 ps 1.2 title sprintf('--ooh, %s MiB', word(sizes, i))
set title 'downtime (source frozen -> destination running)'
set ylabel 'ms'
plot for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'one-shot' ? $2 : NaN):11 \
        with points pt 5 ps 1.2 title sprintf('one-shot, %s MiB', word(sizes, i)), \
     for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'ooh' ? $2 : NaN):11 \
        with points pt 7 ps 1.2 title sprintf('--ooh, %s MiB', word(sizes, i)), \
     for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'ooh-pc' ? $2 : NaN):11 \
        with points pt 9 ps 1.2 title sprintf('--ooh --post-copy, %s MiB', word(sizes, i)), \
     for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq '1shot-pc' ? $2 : NaN):11 \
        with points pt 13 ps 1.2 title sprintf('-n 0 --post-copy, %s MiB', word(sizes, i))
set title 'bytes sent (pages of every round and the other images)'
set ylabel 'MiB'
plot for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'one-shot' ? $2 : NaN):8 \
        with points pt 5 ps 1.2 title sprintf('one-shot, %s MiB', word(sizes, i)), \
     for [i=1:words(sizes)] csv using ($1 == word(sizes, i) + 0 && strcol(3) eq 'ooh' ? $2 : NaN):8 \
        with points pt 7 ps 1.2 title sprintf('--ooh, %s MiB', word(sizes, i))
unset multiplot
