#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The bench-collect run target: ooh-bench-collect, then its PNG plot.
# Usage: bench_collect.sh BENCH OOHD CSV PNG PLOT_SCRIPT
set -e
bench=$1 oohd=$2 csv=$3 png=$4 plot=$5
load=$(cut -d' ' -f1 /proc/loadavg) # other work on the machine skews the numbers
"$bench" --oohd "$oohd" --csv "$csv"
if command -v gnuplot >/dev/null; then
	# The machine goes into the title: the numbers mean little without it.
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	machine=" ($(nproc) x $cpu, Linux $(uname -r), load $load at the start)"
	gnuplot -e "csv='$csv'; png='$png'; machine='$machine'" "$plot"
	echo "plot written to $png"
else
	echo "gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
fi
