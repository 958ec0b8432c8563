#pragma once
// The body of both probes, templated on the backend so that each translation unit instantiates
// its own copy (distinct types give distinct functions).
#include <cstddef>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include <multibool/backends/int8_activations.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "highway_targets/highway_target_probe.hpp"
#include "test_support.hpp"

namespace multibool::testing {

// The backend's Highway target, or its name for backends that have none (the scalar reference).
template <class Backend>
std::string target_of() {
    if constexpr (requires { Backend::target(); }) {
        return std::string(Backend::target());
    } else {
        return std::string(Backend::name);
    }
}

template <class Backend>
HighwayTargetProbe probe_products(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937_64 rng(seed);
    const auto m = random_matrix<BitPlaneMatrix<3, 64>>(rows, cols, rng);
    const auto x = small_integers(cols, rng);
    const auto dy = small_integers(rows, rng);
    const Backend backend(2);
    HighwayTargetProbe probe{target_of<Backend>(), typeid(Backend).name(), std::vector<float>(rows),
                             std::vector<float>(cols), std::vector<float>(rows)};
    backend.gemv(m, x, probe.gemv);
    backend.gemv_transposed(m, dy, probe.gemv_transposed);
    backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(x), probe.gemv_int8);
    return probe;
}

}  // namespace multibool::testing
