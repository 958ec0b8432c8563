#pragma once
// Level expansion compiled for two targets of test_dynamic_dispatch: -march=native (AVX-512 VNNI
// here: byte dot products) and -march=haswell (AVX2: the 16-bit multiply-add path). Both compute
// the same integers and the same float operations per output, so their products must be equal to
// the bit although their tiles differ in height.
#include <cstddef>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/matrix_view.hpp>

#include "test_support.hpp"

namespace multibool::testing {

struct LevelExpansionProbe {
    std::string target;
    std::vector<float> ys;
};

LevelExpansionProbe level_expansion_native(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed);
LevelExpansionProbe level_expansion_haswell(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed);

namespace {
// Internal linkage: each translation unit keeps the copy compiled for its own target.
template <class Gemm>
LevelExpansionProbe run_level_expansion(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed,
                                        std::size_t tile_rows, Gemm gemm) {
    std::mt19937_64 rng(seed);
    const auto m = random_matrix<BitPlaneMatrix<3, 128, half>>(rows, cols, rng);
    const auto xs = random_floats(tokens * cols, rng);
    LevelExpansionProbe probe{{}, std::vector<float>(tokens * rows)};
    gemm(m, tile_rows, MatrixView<const float>(std::span<const float>(xs), tokens, cols),
         MatrixView<float>(std::span<float>(probe.ys), tokens, rows));
    return probe;
}
}  // namespace

}  // namespace multibool::testing
