#pragma once
// Level expansion compiled for two targets of test_dynamic_dispatch: -march=native (AVX-512 VNNI
// here: byte dot products) and -march=haswell (AVX2: the 16-bit multiply-add path). Both compute
// the same integers and the same float operations per output, so their products must be equal to
// the bit although their tiles differ in height.
#include <cstddef>
#include <string>
#include <vector>

namespace multibool::testing {

struct LevelExpansionProbe {
    std::string target;
    std::vector<float> ys;
};

LevelExpansionProbe level_expansion_native(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed);
LevelExpansionProbe level_expansion_haswell(std::size_t rows, std::size_t cols, std::size_t tokens, unsigned seed);

}  // namespace multibool::testing
