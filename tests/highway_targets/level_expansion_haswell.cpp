// Built with -march=haswell -maes (and HWY_COMPILE_ONLY_STATIC=1): level expansion on the AVX2 target
// (Highway 1.0.3 wants AES for it, which -march=haswell alone does not enable in GCC 12).
#include <hwy/targets.h>
#include <multibool/backends/lookup_table_gemv.hpp>

#include "highway_targets/level_expansion_probe.hpp"

multibool::testing::LevelExpansionProbe multibool::testing::level_expansion_haswell(std::size_t rows, std::size_t cols,
                                                                                    std::size_t tokens, unsigned seed) {
    auto probe = run_level_expansion(rows, cols, tokens, seed, lookup_table_tile_rows(),
                                     [](const auto& m, std::size_t tile_rows, auto xs, auto ys) {
                                         const LookupTableMatrix<3, half> packed(m, tile_rows);
                                         level_expansion_gemm(packed, xs, ys, 2);
                                     });
    probe.target = hwy::TargetName(HWY_TARGET);
    return probe;
}
