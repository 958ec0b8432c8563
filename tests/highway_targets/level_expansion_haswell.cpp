// Built with -march=haswell -maes (and HWY_COMPILE_ONLY_STATIC=1): level expansion on that static target.
// (Highway 1.0.3 wants AES for AVX2, which -march=haswell alone does not enable in GCC 12).
#include "highway_targets/level_expansion_run.hpp"

multibool::testing::LevelExpansionProbe multibool::testing::level_expansion_haswell(std::size_t rows, std::size_t cols,
                                                                                    std::size_t tokens, unsigned seed) {
    return run_level_expansion(rows, cols, tokens, seed);
}
