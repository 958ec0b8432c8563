// Level expansion on two static targets in one program (highway_targets/level_expansion_*.cpp):
// AVX-512 with VNNI byte dot products and AVX2 with 16-bit multiply-adds give equal products.
#include <catch2/catch.hpp>

#include <iostream>

#include "highway_targets/level_expansion_probe.hpp"

TEST_CASE("level expansion: byte dot products and 16-bit multiply-adds agree to the bit",
          "[backends][lookup][targets]") {
    using namespace multibool::testing;
    // 14 tokens: whole token steps and a remainder on both targets; 300 columns: a ragged block.
    const auto native = level_expansion_native(200, 300, 14, 11);
    const auto haswell = level_expansion_haswell(200, 300, 14, 11);
    CAPTURE(native.target, haswell.target);
    if (native.target == haswell.target) {
        std::cout << "SKIPPED: -march=native gives the AVX2 target on this machine\n";
        return;
    }
    REQUIRE(native.ys == haswell.ys);
}
