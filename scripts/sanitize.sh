#!/usr/bin/env bash
# Runs the unit tests of every area and the fuzz regression replays under AddressSanitizer and
# UndefinedBehaviorSanitizer (preset debug-asan), then the thread pool and training tests under
# ThreadSanitizer (preset tsan). A sanitizer report aborts the test that made it, which fails.
# The command-line, build and dynamic-dispatch tests stay with the release suite: built again
# with a sanitizer they would double CI's build time. So do the two cases that score or fine-tune
# the shipped model over whole texts (15 minutes under ASan, on paths the smaller cases cover).
# Usage: scripts/sanitize.sh [asan] [tsan]   (both by default)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(asan tsan)
for run in "${runs[@]}"; do
    case "$run" in
        asan)
            cmake --preset debug-asan >/dev/null
            cmake --build --preset debug-asan --target test_core test_solvers test_backends test_nn test_training \
                test_examples multibool-fuzz-replay
            ctest --preset debug-asan
            ;;
        tsan)
            cmake --preset tsan >/dev/null
            cmake --build --preset tsan --target test_backends test_training
            ctest --preset tsan
            ;;
        *)
            echo "scripts/sanitize.sh: unknown run '$run' (asan or tsan)" >&2
            exit 2
            ;;
    esac
done
