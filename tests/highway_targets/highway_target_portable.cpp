// Built without -m flags: HighwayBackend of Highway's baseline target.
#include <multibool/backends/highway_backend.hpp>

#include "highway_targets/probe_products.hpp"

multibool::testing::HighwayTargetProbe multibool::testing::probe_portable_highway(std::size_t rows, std::size_t cols,
                                                                                  unsigned seed) {
    return probe_products<HighwayBackend>(rows, cols, seed);
}
