#!/bin/sh
# The README's demo: stories260K scored and continued in float, then with every projection as
# K=3 Boolean kernels (groups of 64). Usage: scripts/llama-demo.sh [build dir] (default
# build/release). The model and texts come from $MULTIBOOL_ASSETS, else the configured folder.
set -eu
tool="${1:-build/release}/examples/multibool-llama"
[ -x "$tool" ] || { echo "no $tool: run cmake --build --preset release --target multibool-llama" >&2; exit 1; }
for kernels in 0 3; do
  if [ "$kernels" = 0 ]; then label="float32"; else label="K=$kernels Boolean kernels, G=64"; fi
  echo "== $label: perplexity on tinystories-valid.txt"
  "$tool" perplexity --kernels "$kernels"
  echo "== $label: greedy continuation of \"Once upon a time\""
  "$tool" generate --kernels "$kernels" --steps 80
done
