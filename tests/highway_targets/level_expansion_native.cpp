// Built with -march=native (and HWY_COMPILE_ONLY_STATIC=1): level expansion on that static target.
#include "highway_targets/level_expansion_run.hpp"

multibool::testing::LevelExpansionProbe multibool::testing::level_expansion_native(std::size_t rows, std::size_t cols,
                                                                                   std::size_t tokens, unsigned seed) {
    return run_level_expansion(rows, cols, tokens, seed);
}
