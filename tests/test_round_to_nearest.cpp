#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/solvers/round_to_nearest.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

RoundToNearestMatrix quantize(const std::vector<float>& w, std::size_t rows, std::size_t cols, std::size_t bits,
                              std::size_t group_size) {
    return round_to_nearest(MatrixView<const float>(std::span<const float>(w), rows, cols), bits, group_size);
}

// Written from the definition, not from the implementation: the group's fp16 minimum and
// scale, its 2^b levels, and that each weight's value is a level no farther than any other.
void check_nearest_levels(const RoundToNearestMatrix& m, const std::vector<float>& w) {
    const std::size_t cols = m.cols();
    const std::size_t group = m.group_size();
    const double top = double((1u << m.bits()) - 1);
    const auto dense = m.dequantize();
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t g = 0; g * group < cols; ++g) {
            const std::size_t begin = g * group, end = std::min(cols, begin + group);
            const float low = *std::min_element(w.begin() + i * cols + begin, w.begin() + i * cols + end);
            const float high = *std::max_element(w.begin() + i * cols + begin, w.begin() + i * cols + end);
            const half minimum(low);
            const half scale(std::max(0.0, (double(high) - double(minimum)) / top));
            CAPTURE(i, g, low, high);
            REQUIRE(m.minimum(i, g).bits() == minimum.bits());
            REQUIRE(m.scale(i, g).bits() == scale.bits());
            std::vector<float> levels;
            for (unsigned q = 0; q <= unsigned(top); ++q)
                levels.push_back(static_cast<float>(double(minimum) + q * double(scale)));
            for (std::size_t j = begin; j < end; ++j) {
                const double x = w[i * cols + j];
                const float value = dense[i * cols + j];
                CAPTURE(j, x, value);
                REQUIRE(m.code(i, j) <= unsigned(top));
                REQUIRE(value == levels[m.code(i, j)]);
                REQUIRE(m.weight(i, j) == value);
                for (float level : levels) REQUIRE(std::fabs(x - value) <= std::fabs(x - double(level)));
            }
        }
    }
}

}  // namespace

TEST_CASE("round to nearest: a hand-worked row", "[rtn]") {
    // Group 0 [-1, 0.2, 0.7, 2]: minimum -1, scale 3 / 3 = 1, levels -1, 0, 1, 2.
    // Group 1 [0.5, 0.5, 0.5] (the ragged tail): one value, exact in fp16, so scale 0.
    // Row 1 [0.1, 0.4, 0.7, 1.0 | 0, 0, 0]: the minimum is fp16(0.1) = 0.0999755859375 (0x2E66) and
    // the scale is fp16((1 - 0.0999755859375) / 3) = 0.300048828125 (0x34CD), from the rounded minimum.
    const std::vector<float> w{-1.0f, 0.2f, 0.7f, 2.0f, 0.5f, 0.5f, 0.5f, 0.1f, 0.4f, 0.7f, 1.0f, 0.0f, 0.0f, 0.0f};
    const auto m = quantize(w, 2, 7, 2, 4);
    REQUIRE(m.groups_per_row() == 2);
    REQUIRE(m.group_end(1) == 7);
    REQUIRE(static_cast<float>(m.minimum(0, 0)) == -1.0f);
    REQUIRE(static_cast<float>(m.scale(0, 0)) == 1.0f);
    REQUIRE(static_cast<float>(m.minimum(0, 1)) == 0.5f);
    REQUIRE(static_cast<float>(m.scale(0, 1)) == 0.0f);
    REQUIRE(m.minimum(1, 0).bits() == 0x2E66);
    REQUIRE(m.scale(1, 0).bits() == 0x34CD);
    REQUIRE(m.dequantize() == std::vector<float>{-1.0f, 0.0f, 1.0f, 2.0f, 0.5f, 0.5f, 0.5f, 0.0999755859375f,
                                                 0.4000244140625f, 0.7000732421875f, 1.0001220703125f, 0.0f, 0.0f,
                                                 0.0f});
    for (std::size_t j = 0; j < 4; ++j) {
        REQUIRE(m.code(0, j) == j);
        REQUIRE(m.code(1, j) == j);
    }
    // 2 bits per weight plus two fp16 values for each of the 2 groups, over 7 columns.
    REQUIRE(m.bits_per_weight() == Approx((2.0 * 7 + 32.0 * 2) / 7));
    REQUIRE(m.storage_bytes() == 4 + 2 * 2 * 2 * 2);
}

TEST_CASE("round to nearest: the code is the nearest of the levels dequantize gives, not of exact ones", "[rtn]") {
    // Minimum 2046 and scale 0x27B3 (0.0300750732421875) at 7 bits: 2048 lies at t = 66.50025
    // steps, so exactly level 67 is nearer; but 2048 is a power of two, float's spacing doubles
    // there, and as floats level 66 (2047.98498535...) is nearer than level 67 (2048.01513671875).
    const std::vector<float> w{0x1.ff8f04p+10f, 2048.0f, 0x1.003a38p+11f};
    const auto m = quantize(w, 1, 3, 7, 3);
    REQUIRE(m.minimum(0, 0).bits() == 0x67FE);
    REQUIRE(m.scale(0, 0).bits() == 0x27B3);
    REQUIRE(m.code(0, 1) == 66);
    REQUIRE(m.weight(0, 1) == 0x1.ffff0ap+10f);
    check_nearest_levels(m, w);
}

TEST_CASE("round to nearest: every value is the nearest of its group's 2^b levels", "[rtn]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (std::size_t bits = 1; bits <= 8; ++bits) {
        for (std::size_t group : {std::size_t{32}, std::size_t{64}, std::size_t{128}, per_row, std::size_t{3}}) {
            for (std::size_t cols : {1u, 100u, 172u, 256u}) {
                CAPTURE(bits, group, cols);
                auto w = testing::random_floats(4 * cols, rng, 0.05f);
                w[0] = 3.0f;                                                // an outlier
                for (std::size_t j = 0; j < cols; ++j) w[cols + j] = 0.1f;  // a constant row, inexact in fp16
                for (std::size_t j = 0; j < cols; ++j) w[2 * cols + j] = float(j % 5) * 0.25f;  // on a grid: ties
                check_nearest_levels(quantize(w, 4, cols, bits, group), w);
            }
        }
    }
}

TEST_CASE("round to nearest: the error falls with every added bit", "[rtn]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const auto w = testing::random_floats(16 * 256, rng, 0.02f);
    double previous = std::numeric_limits<double>::infinity();
    for (std::size_t bits = 1; bits <= 8; ++bits) {
        const double error = testing::relative_frobenius_error(w, quantize(w, 16, 256, bits, 64).dequantize());
        CAPTURE(bits, error, previous);
        REQUIRE(error < previous);
        // Beyond the coarsest grids one more bit halves the step, and so roughly the error.
        if (bits >= 3) REQUIRE(error < 0.6 * previous);
        previous = error;
    }
    REQUIRE(previous < 0.01);
}

TEST_CASE("round to nearest: bits per weight count the fp16 pairs of every group", "[rtn]") {
    const std::vector<float> w(8 * 4096, 0.5f);
    // Q4_1's layout: 4 bits and two fp16 values per 32 weights.
    REQUIRE(quantize(w, 8, 4096, 4, 32).bits_per_weight() == 5.0);
    REQUIRE(quantize(w, 8, 4096, 4, 128).bits_per_weight() == 4.25);
    REQUIRE(quantize(w, 8, 4096, 3, 128).bits_per_weight() == 3.25);
    REQUIRE(quantize(w, 8, 4096, 2, per_row).bits_per_weight() == Approx(2.0 + 32.0 / 4096));
    REQUIRE(quantize(w, 8, 4096, 4, 128).storage_bytes() == 8 * 4096 / 2 + 8 * 32 * 4);
    // Ragged: 172 columns in groups of 64 are 3 groups per row.
    const std::vector<float> ragged(3 * 172, 1.0f);
    const auto m = quantize(ragged, 3, 172, 3, 64);
    REQUIRE(m.groups_per_row() == 3);
    REQUIRE(m.bits_per_weight() == Approx((3.0 * 172 + 32.0 * 3) / 172));
    REQUIRE(m.storage_bytes() == (3 * 3 * 172 + 7) / 8 + 3 * 3 * 4);
    REQUIRE(quantize({}, 0, 0, 4, 32).bits_per_weight() == 0.0);
}

TEST_CASE("round to nearest: a group wider than the row, up to SIZE_MAX, is one group per row", "[rtn]") {
    std::mt19937_64 rng(5);
    std::vector<float> w(3 * 7);
    for (auto& v : w) v = std::normal_distribution<float>()(rng);
    const RoundToNearestMatrix whole_row = quantize(w, 3, 7, 3, per_row);
    REQUIRE(whole_row.groups_per_row() == 1);
    for (const std::size_t group : {std::size_t{8}, std::numeric_limits<std::size_t>::max()}) {
        CAPTURE(group);
        const RoundToNearestMatrix m = quantize(w, 3, 7, 3, group);
        CHECK(m.groups_per_row() == 1);
        CHECK(m.dequantize() == whole_row.dequantize());
    }
}

TEST_CASE("round to nearest: invalid input is refused with its place", "[rtn]") {
    std::vector<float> w(2 * 5, 1.0f);
    REQUIRE_THROWS_WITH(quantize(w, 2, 5, 0, 4), "round_to_nearest: bits must be 1 to 8, got 0");
    REQUIRE_THROWS_WITH(quantize(w, 2, 5, 9, 4), "round_to_nearest: bits must be 1 to 8, got 9");
    w[8] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(quantize(w, 2, 5, 4, 4), Catch::Contains("weight at row 1 col 3 of a 2x5 matrix is") &&
                                                     Catch::Contains("not a finite number"));
    w[8] = -std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(quantize(w, 2, 5, 4, 4), Catch::Contains("row 1 col 3"));
    w[8] = 1.0f;
    w[1] = 1e6f;  // beyond fp16's largest value, 65504
    REQUIRE_THROWS_WITH(quantize(w, 2, 5, 4, 4), Catch::Contains("row 0 group 0 of a 2x5 matrix spans [1.000000, "
                                                                 "1000000.000000], beyond what fp16"));
}
