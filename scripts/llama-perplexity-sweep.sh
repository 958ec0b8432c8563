#!/bin/sh
# Perplexity of stories260K on tinystories-valid.txt, float and every supported (K, G), with the
# conversion totals of each, as a Markdown table. Usage: scripts/llama-perplexity-sweep.sh [build dir]
# (default build/release; build the multibool-llama target first). Honours $MULTIBOOL_ASSETS;
# SWEEP_KERNELS and SWEEP_GROUPS (space-separated) narrow the grid; SWEEP_INIT picks the
# initializer (default act-aware).
set -eu
build=${1:-build/release}
tool="$build/examples/multibool-llama"
[ -x "$tool" ] || { echo "no $tool: run cmake --build --preset release --target multibool-llama" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "| K | G | bits/weight | relative error | perplexity | tokens |"
echo "|---|---|---|---|---|---|"
line=$("$tool" perplexity 2>/dev/null | tail -n 1)
echo "| float | - | 32 | 0 | $(echo "$line" | awk '{print $2}') | $(echo "$line" | awk '{print $4}') |"
for g in ${SWEEP_GROUPS:-32 64 128}; do
  for k in ${SWEEP_KERNELS:-1 2 3 4}; do
    model="$tmp/k$k-g$g.mbool"
    totals=$("$tool" quantize --kernels "$k" --group "$g" --init "${SWEEP_INIT:-act-aware}" --out "$model" 2>/dev/null | grep '^total:')
    bpw=$(echo "$totals" | sed -n 's/.*, \([0-9.]*\) bits\/weight.*/\1/p')
    err=$(echo "$totals" | sed -n 's/.*relative error \([0-9.]*\).*/\1/p')
    line=$("$tool" perplexity --model "$model" 2>/dev/null | tail -n 1)
    echo "| $k | $g | $bpw | $err | $(echo "$line" | awk '{print $2}') | $(echo "$line" | awk '{print $4}') |"
  done
done
