#!/bin/sh
# Renders the CSV training log of `multibool-llama finetune` into a PNG: training loss (left axis)
# and validation perplexity (right axis, log scale) against the step.
# Usage: scripts/plot_finetune.sh LOG.csv OUT.png [TITLE]
# Set REFERENCE_PERPLEXITY (e.g. 7.2486) to draw the float model's perplexity as a dashed line,
# and TARGET_PERPLEXITY (e.g. 9.06, issue 16's K=2 target) to draw the target as a dotted one.
set -eu
die() { echo "plot_finetune.sh: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: $0 LOG.csv OUT.png [TITLE]"
csv=$1 out=$2 title=${3:-$(basename "$1")}
command -v gnuplot >/dev/null 2>&1 || die "gnuplot not found; install it with: apt-get install gnuplot-nox"
[ -f "$csv" ] || die "no such file: $csv"
[ -s "$csv" ] || die "empty file: $csv"
ref=${REFERENCE_PERPLEXITY:-}
target=${TARGET_PERPLEXITY:-}
# Checked here because the values are pasted into the gnuplot program as numbers.
case $ref in *[!0-9.eE+-]*) die "REFERENCE_PERPLEXITY is not a number: $ref" ;; esac
case $target in *[!0-9.eE+-]*) die "TARGET_PERPLEXITY is not a number: $target" ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Columns are found by name (the flip-rate columns vary with K); empty fields are dropped here
# rather than in gnuplot, so every data file holds only complete "step value" rows.
awk -F, -v loss_file="$tmp/loss.dat" -v ppl_file="$tmp/ppl.dat" '
  { sub(/\r$/, "") }
  NR == 1 {
    for (i = 1; i <= NF; i++) col[$i] = i
    split("step loss valid_perplexity", need, " ")
    for (n = 1; n <= 3; n++)
      if (!(need[n] in col)) { print "plot_finetune.sh: CSV header lacks column \"" need[n] "\"" > "/dev/stderr"; exit 3 }
    s = col["step"]; l = col["loss"]; p = col["valid_perplexity"]
    next
  }
  $s != "" && $l != "" { print $s, $l > loss_file }
  $s != "" && $p != "" { print $s, $p > ppl_file }
' "$csv" || exit 2
[ -s "$tmp/loss.dat" ] || die "no rows with a training loss in $csv"

# Gnuplot single-quoted strings escape a quote by doubling it.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

# Validation perplexity and the reference line are optional, so the plot command is assembled.
plot="'$tmp/loss.dat' using 1:2 axes x1y1 with lines lw 1.5 lc rgb '#1f77b4' title 'training loss'"
if [ -s "$tmp/ppl.dat" ] || [ -n "$ref" ] || [ -n "$target" ]; then
  y2="set y2label 'validation perplexity (log scale)'; set y2tics nomirror (1,2,3,5,7,10,20,30,50,70,100,200,300,500,1000); set logscale y2; set ytics nomirror"
else
  y2=""
fi
[ -s "$tmp/ppl.dat" ] && plot="$plot, '$tmp/ppl.dat' using 1:2 axes x1y2 with linespoints pt 7 ps 1 lw 2 lc rgb '#d62728' title 'validation perplexity'"
[ -n "$ref" ] && plot="$plot, $ref axes x1y2 with lines dt 2 lw 2 lc rgb '#555555' title sprintf('float model (%g)', $ref)"
[ -n "$target" ] && plot="$plot, $target axes x1y2 with lines dt 3 lw 2 lc rgb '#2ca02c' title sprintf('target (%g)', $target)"

gnuplot <<EOF
# pngcairo renders much nicer text and lines, but plain png (libgd) is the fallback.
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,600 noenhanced font ',11'
} else {
  set terminal png size 1000,600 noenhanced
}
set output $(quote "$out")
set title $(quote "$title")
set datafile separator whitespace
set xlabel 'step'
set ylabel 'training loss'
set grid
set key top right box opaque
$y2
plot $plot
EOF
echo "wrote $out"
