#!/bin/sh
# The README's demo: stories260K scored and continued in float, then with every projection as
# K=3 Boolean kernels (groups of 64), then llama.cpp's GGUF of the same model scored the way
# llama-perplexity -c 256 scores it (llama.cpp measured 6.1632). Usage: scripts/llama-demo.sh [build dir] (default
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
# The folder the tool's defaults come from: $MULTIBOOL_ASSETS, else the one CMake was configured with.
assets="${MULTIBOOL_ASSETS:-$(sed -n 's/^MULTIBOOL_ASSETS:[A-Z]*=//p' "${1:-build/release}/CMakeCache.txt")}"
echo "== llama.cpp's GGUF of stories260K, llama.cpp's perplexity protocol (llama-perplexity -c 256: 6.1632)"
"$tool" perplexity --model "$assets/gguf/stories260K-f32.gguf" --protocol llama.cpp --ctx 256
