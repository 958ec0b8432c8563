#pragma once
// The body of both level-expansion probes (level_expansion_probe.hpp), for the two translation
// units built with -march flags only: it needs their static Highway target.
#include <hwy/targets.h>

#include <cstddef>
#include <random>
#include <span>
#include <vector>

#include <multibool/backends/lookup_table_gemv.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/matrix_view.hpp>

#include "highway_targets/level_expansion_probe.hpp"
#include "test_support.hpp"

namespace multibool::testing {

namespace {
// Internal linkage: each translation unit keeps the copy compiled for its own (static) target.
inline LevelExpansionProbe run_level_expansion(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed) {
    std::mt19937_64 rng(seed);
    const auto m = random_matrix<BitPlaneMatrix<3, 128, half>>(rows, cols, rng);
    const auto xs = random_floats(tokens * cols, rng);
    LevelExpansionProbe probe{hwy::TargetName(HWY_TARGET), std::vector<float>(tokens * rows)};
    const LookupTableMatrix<3, half> packed(m, lookup_table_tile_rows());
    level_expansion_gemm(packed, MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                         MatrixView<float>(std::span<float>(probe.ys), tokens, rows), 2);
    return probe;
}
}  // namespace

}  // namespace multibool::testing
