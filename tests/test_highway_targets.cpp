// HighwayBackend compiled for two targets in one program (highway_targets/: one translation unit
// with -march=native, one without -m flags): each must keep its own code. Were the kernels plain
// inline functions, the linker would keep one definition for both, and the portable translation
// unit would run the other's (possibly unsupported) instructions.
#include <catch2/catch.hpp>

#include <iostream>
#include <string>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "highway_targets/highway_target_probe.hpp"
#include "highway_targets/probe_products.hpp"

TEST_CASE("HighwayBackend built for two targets in one program: each runs its own code, both exact",
          "[backends][highway][targets]") {
    using namespace multibool::testing;
    const auto native = probe_native_highway(37, 300, 7);
    const auto portable = probe_portable_highway(37, 300, 7);
    CAPTURE(native.target, portable.target, native.type_name, portable.type_name);
    if (native.target == portable.target) {
        std::cout << "SKIPPED: -march=native gives Highway's baseline target on this machine\n";
        return;
    }
    REQUIRE(native.type_name != portable.type_name);
    // Small-integer inputs and power-of-two scales: every product is exact, on any target.
    const auto reference = probe_products<multibool::ScalarBackend>(37, 300, 7);
    REQUIRE(native.gemv == reference.gemv);
    REQUIRE(portable.gemv == reference.gemv);
    REQUIRE(native.gemv_transposed == reference.gemv_transposed);
    REQUIRE(portable.gemv_transposed == reference.gemv_transposed);
    REQUIRE(native.gemv_int8 == reference.gemv_int8);
    REQUIRE(portable.gemv_int8 == reference.gemv_int8);
}
