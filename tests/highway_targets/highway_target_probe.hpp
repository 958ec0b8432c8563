#pragma once
// Two translation units of test_dynamic_dispatch include the Highway backends, one built with
// -march=native and one without -m flags. Each reports, through a plain function, which target
// its HighwayBackend was compiled for and what its products give, so the test can check that the
// linker kept both (no two definitions of one inline function) and that each runs its own code.
#include <cstddef>
#include <string>
#include <vector>

namespace multibool::testing {

struct HighwayTargetProbe {
    std::string target;     // HighwayBackend::target() as that translation unit sees it
    std::string type_name;  // typeid(HighwayBackend).name()
    std::vector<float> gemv, gemv_transposed, gemv_int8;
};

// The products of the same seeded random matrix and inputs, from each translation unit.
HighwayTargetProbe probe_native_highway(std::size_t rows, std::size_t cols, unsigned seed);
HighwayTargetProbe probe_portable_highway(std::size_t rows, std::size_t cols, unsigned seed);

}  // namespace multibool::testing
