// Built with -march=native (and HWY_COMPILE_ONLY_STATIC=1): HighwayBackend of the build machine's target.
#include <multibool/backends/highway_backend.hpp>

#include "highway_targets/probe_products.hpp"

multibool::testing::HighwayTargetProbe multibool::testing::probe_native_highway(std::size_t rows, std::size_t cols,
                                                                                unsigned seed) {
    return probe_products<HighwayBackend>(rows, cols, seed);
}
