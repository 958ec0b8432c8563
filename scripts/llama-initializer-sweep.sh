#!/bin/sh
# Perplexity of stories260K on tinystories-valid.txt for every initializer and scale layout at
# G = 64 (K = 1..3, act-aware also K = 4 and --bits budgets), beside round-to-nearest and GPTQ
# 2-, 3- and 4-bit, as a Markdown table. Usage: scripts/llama-initializer-sweep.sh [build dir] (default
# build/release). SWEEP_ROWS=act-aware prints only the act-aware rows. Honours $MULTIBOOL_ASSETS.
# Takes about 30 minutes on 2 cores.
set -eu
tool="${1:-build/release}/examples/multibool-llama"
[ -x "$tool" ] || { echo "no $tool: run cmake --build --preset release --target multibool-llama" >&2; exit 1; }

row() {  # label, then the tool's arguments
  label=$1; shift
  out=$("$tool" perplexity "$@" 2>&1)
  bpw=$(echo "$out" | sed -n 's/.* \([0-9.]*\) bits\/weight, relative error.*/\1/p' | tail -n 1)
  err=$(echo "$out" | sed -n 's/.*bits\/weight, relative error \([0-9.]*\),.*/\1/p' | tail -n 1)
  ppl=$(echo "$out" | sed -n 's/^perplexity: \([0-9.]*\) tokens.*/\1/p')
  echo "| $label | $bpw | $err | $ppl |"
}

act_aware_rows() {  # K = 1..4, then budgets: K=2's and K=3's sizes among them, both allocations
  for k in 1 2 3 4; do row "act-aware, group, K=$k" --kernels "$k" --group 64; done
  for allocation in kl output-error; do
    suffix=""
    [ "$allocation" = kl ] || suffix=", \`--allocation output-error\`"
    for b in 2.5 2.5706 3.0 3.8559 4.5; do
      row "act-aware, group, --bits $b$suffix" --bits "$b" --group 64 --allocation "$allocation"
    done
  done
}
if [ "${SWEEP_ROWS:-all}" = act-aware ]; then act_aware_rows; exit 0; fi

echo "| model (G = 64) | bits/weight | relative error | perplexity |"
echo "|---|---|---|---|"
row "float32" --threads 2
for b in 2 3 4; do row "RTN $b-bit" --rtn "$b" --group 64; done
for b in 2 3 4; do row "GPTQ $b-bit" --gptq "$b" --group 64; done
for b in 2 3 4; do row "GPTQ $b-bit, G = 32" --gptq "$b" --group 32; done
for init in greedy alternating; do
  for k in 1 2 3; do row "$init, group, K=$k" --kernels "$k" --group 64 --init "$init"; done
  row "$init, group, --bits 2.5" --bits 2.5 --group 64 --init "$init"
  row "$init, group, --bits 2.5, \`--allocation output-error\`" --bits 2.5 --group 64 --init "$init" --allocation output-error
done
act_aware_rows
for init in greedy alternating; do
  for k in 1 2 3; do row "$init, rowcol, K=$k" --kernels "$k" --scales rowcol --init "$init"; done
done
