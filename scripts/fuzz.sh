#!/usr/bin/env bash
# Builds the libFuzzer harnesses (preset `fuzz`: clang 14 with AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs each target for SECONDS (default 30) from its committed
# corpus (tests/fuzz/corpus/<target>) and dictionary. The corpus it grows is kept in
# build/fuzz/corpus/<target>, so later runs go on from it. A crash, a sanitizer report, a timeout
# or a broken oracle fails the script and leaves the input in build/fuzz/findings/<target>/; to keep
# it as a regression input, copy it to tests/fuzz/regressions/<target>/ under a name that says what
# it found.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(bit_plane_matrix row_column_matrix llama2c_checkpoint tokenizer model_file gguf_model optimizer_state
        fine_tune_checkpoint command_line)
fi
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target multibool-fuzz
fuzzer=build/fuzz/tests/fuzz/multibool-fuzz
status=0
printf '%-22s %10s %8s %9s %8s %s\n' target executions seconds corpus coverage result
for target in "${targets[@]}"; do
    corpus=build/fuzz/corpus/$target findings=build/fuzz/findings/$target log=build/fuzz/$target.log
    mkdir -p "$corpus" "$findings"
    dictionary=()
    [ -f "tests/fuzz/dictionaries/$target.dict" ] && dictionary=(-dict="tests/fuzz/dictionaries/$target.dict")
    result=ok
    MULTIBOOL_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="$findings/" -print_final_stats=1 "${dictionary[@]}" "$corpus" "tests/fuzz/corpus/$target" \
        >"$log" 2>&1 || { result="FAILED (log: $log)"; status=1; }
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    elapsed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-22s %10s %8s %9s %8s %s\n' "$target" "${executions:-?}" "${elapsed:-?}" "$(ls "$corpus" | wc -l)" \
        "${coverage:-?}" "$result"
done
exit $status
