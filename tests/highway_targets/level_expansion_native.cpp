// Built with -march=native (and HWY_COMPILE_ONLY_STATIC=1): level expansion on that static target.
#include <hwy/targets.h>
#include <multibool/backends/lookup_table_gemv.hpp>

#include "highway_targets/level_expansion_probe.hpp"

multibool::testing::LevelExpansionProbe multibool::testing::level_expansion_native(std::size_t rows, std::size_t cols,
                                                                                   std::size_t tokens, unsigned seed) {
    auto probe = run_level_expansion(rows, cols, tokens, seed, lookup_table_tile_rows(),
                                     [](const auto& m, std::size_t tile_rows, auto xs, auto ys) {
                                         const LookupTableMatrix<3, half> packed(m, tile_rows);
                                         level_expansion_gemm(packed, xs, ys, 2);
                                     });
    probe.target = hwy::TargetName(HWY_TARGET);
    return probe;
}
