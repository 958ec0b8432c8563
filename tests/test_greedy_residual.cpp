#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/solvers/greedy_residual.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

TEST_CASE("greedy residual on a hand-worked row", "[core][solvers]") {
    // w = [3, -1, 2, -2]: alpha_1 = mean|w| = 2, B_1 = [+,-,+,-], R = [1, 1, 0, 0];
    // alpha_2 = 0.5, B_2 = [+,+,+,+] (sign(0) = +1), W_hat = [2.5, -1.5, 2.5, -1.5].
    const std::vector<float> w{3.0f, -1.0f, 2.0f, -2.0f};
    const MatrixView<const float> view(std::span<const float>(w), 1, 4);
    const auto one = greedy_residual<BitPlaneMatrix<1, per_row>>(view);
    REQUIRE(one.scale(0, 0, 0) == 2.0f);
    REQUIRE(one.dequantize() == std::vector<float>{2.0f, -2.0f, 2.0f, -2.0f});
    const auto two = greedy_residual<BitPlaneMatrix<2, per_row>>(view);
    REQUIRE(two.scale(1, 0, 0) == 0.5f);
    REQUIRE(two.sign(1, 0, 2) == 1);
    REQUIRE(two.dequantize() == std::vector<float>{2.5f, -1.5f, 2.5f, -1.5f});
}

TEST_CASE("greedy K=1 is sign times the mean magnitude of each ragged group", "[core][solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 3, cols = 172, group = 64;
    const auto w = testing::random_floats(rows * cols, rng);
    const auto m =
        greedy_residual<BitPlaneMatrix<1, 64, float, std::uint32_t>>({std::span<const float>(w), rows, cols});
    const auto dense = m.dequantize();
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t g0 = 0; g0 < cols; g0 += group) {
            const std::size_t g1 = std::min(cols, g0 + group);
            double mean_abs = 0.0;
            for (std::size_t j = g0; j < g1; ++j) mean_abs += std::fabs(w[i * cols + j]);
            mean_abs /= double(g1 - g0);
            for (std::size_t j = g0; j < g1; ++j) {
                const double expected = w[i * cols + j] >= 0.0f ? mean_abs : -mean_abs;
                REQUIRE(dense[i * cols + j] == Approx(expected).epsilon(1e-6));
            }
        }
    }
}

TEST_CASE("each greedy kernel lowers the reconstruction error", "[core][solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 16, cols = 300;
    const auto w = testing::random_floats(rows * cols, rng);
    const MatrixView<const float> view(std::span<const float>(w), rows, cols);
    const double e1 = testing::relative_frobenius_error(w, greedy_residual<BitPlaneMatrix<1, 128>>(view).dequantize());
    const double e2 = testing::relative_frobenius_error(w, greedy_residual<BitPlaneMatrix<2, 128>>(view).dequantize());
    const double e3 = testing::relative_frobenius_error(w, greedy_residual<BitPlaneMatrix<3, 128>>(view).dequantize());
    const double e4 = testing::relative_frobenius_error(w, greedy_residual<BitPlaneMatrix<4, 128>>(view).dequantize());
    CAPTURE(e1, e2, e3, e4);
    // For Gaussian weights one sign bit with the mean magnitude leaves sqrt(1 - 2/pi) ~ 0.60.
    REQUIRE(e1 == Approx(std::sqrt(1.0 - 2.0 / std::numbers::pi)).margin(0.03));
    REQUIRE(e2 < 0.8 * e1);
    REQUIRE(e3 < 0.8 * e2);
    REQUIRE(e4 < 0.8 * e3);
}

TEST_CASE("non-finite weights are refused with their position", "[core][solvers]") {
    std::vector<float> w(2 * 5, 1.0f);
    w[7] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH((greedy_residual<BitPlaneMatrix<2, 32>>({std::span<const float>(w), 2, 5})),
                        Catch::Contains("row 1 col 2 of a 2x5 matrix is nan"));
}
