// GPTQ (solvers/gptq.hpp) against a direct implementation written here from the paper's other
// form (Optimal Brain Quantization: the explicit inverse Hessian, downdated after each column),
// which the Cholesky form equals in exact arithmetic: identical codes on small matrices. With a
// diagonal Hessian no error moves, so GPTQ is round-to-nearest on each group's grid.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include <multibool/solvers/gptq.hpp>

#include "inverse_reference.hpp"
#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;
using multibool::testing::inverse;

namespace {

// The grid from its definition: range [min(w, 0), max(w, 0)], fp16 scale, nearest integer zero
// (ties to even, as the reference code's torch.round).
struct Grid {
    double scale;
    double zero;
};
Grid grid_of(const double* w, std::size_t count, std::size_t bits) {
    const double top = double((1u << bits) - 1);
    double low = 0, high = 0;
    for (std::size_t k = 0; k < count; ++k) {
        low = std::min(low, w[k]);
        high = std::max(high, w[k]);
    }
    if (low == 0 && high == 0) low = -1, high = 1;
    const double scale = double(half((high - low) / top));
    return {scale, std::clamp(std::nearbyint(-low / scale), 0.0, top)};
}
double code_on(const Grid& g, double w, std::size_t bits) {
    return std::clamp(std::nearbyint(w / g.scale) + g.zero, 0.0, double((1u << bits) - 1));
}

// Codes by OBQ's column loop: quantize column j, move the other columns by
// -(w_j - q_j) / [H^-1]_jj * [H^-1]_j,k, then remove j from H^-1.
std::vector<unsigned> direct_gptq(const std::vector<float>& weights, std::size_t rows, std::size_t n,
                                  std::vector<double> h, std::size_t bits, std::size_t group) {
    std::vector<bool> dead(n);
    double mean = 0;
    for (std::size_t j = 0; j < n; ++j) {
        dead[j] = h[j * n + j] == 0;
        if (dead[j]) h[j * n + j] = 1;
        mean += h[j * n + j] / double(n);
    }
    for (std::size_t j = 0; j < n; ++j) h[j * n + j] += 0.01 * mean;
    const std::vector<double> start = inverse(h, n);
    std::vector<unsigned> codes(rows * n);
    for (std::size_t i = 0; i < rows; ++i) {
        std::vector<double> hinv = start;
        std::vector<double> w(n);
        for (std::size_t j = 0; j < n; ++j) w[j] = dead[j] ? 0.0 : double(weights[i * n + j]);
        Grid g{};
        for (std::size_t j = 0; j < n; ++j) {
            if (j % group == 0) g = grid_of(&w[j], std::min(group, n - j), bits);
            const double q = code_on(g, w[j], bits);
            codes[i * n + j] = unsigned(q);
            const double d = hinv[j * n + j];
            const double error = (w[j] - g.scale * (q - g.zero)) / d;
            for (std::size_t k = j + 1; k < n; ++k) w[k] -= error * hinv[j * n + k];
            const std::vector<double> column(hinv.begin() + std::ptrdiff_t(j * n),
                                             hinv.begin() + std::ptrdiff_t(j * n + n));
            for (std::size_t r = 0; r < n; ++r) {
                for (std::size_t k = 0; k < n; ++k) hinv[r * n + k] -= column[r] * column[k] / d;
            }
        }
    }
    return codes;
}

}  // namespace

TEST_CASE("a GPTQ grid, worked by hand", "[solvers][gptq]") {
    // [-0.5, 1] in 3 steps of 0.5 with zero 1: levels -0.5, 0, 0.5, 1.
    const std::vector<double> w{-0.5, 0.2, 1.0};
    const GptqGrid grid = GptqGrid::of(w, 2);
    CHECK(static_cast<double>(grid.scale) == 0.5);
    CHECK(grid.zero == 1);
    CHECK(grid.code(-0.5, 2) == 0);
    CHECK(grid.code(0.2, 2) == 1);
    CHECK(grid.code(0.3, 2) == 2);
    CHECK(grid.code(7.0, 2) == 3);  // clamped
    CHECK(grid.level(3) == 1.0);
    // All positive: the range still includes 0, so zero is 0.
    const std::vector<double> positive{0.25, 0.75};
    CHECK(GptqGrid::of(positive, 1).zero == 0);
    CHECK(static_cast<double>(GptqGrid::of(positive, 1).scale) == 0.75);
    // All zero: [-1, 1].
    const std::vector<double> zeros{0.0, 0.0};
    CHECK(static_cast<double>(GptqGrid::of(zeros, 3).scale) == double(half(2.0 / 7.0)));
}

TEST_CASE("GPTQ gives the codes of the direct column-by-column implementation", "[solvers][gptq]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    for (const auto& [bits, group] : {std::pair{2u, 8u}, std::pair{3u, 8u}, std::pair{4u, 5u}}) {
        CAPTURE(bits, group);
        const std::size_t rows = 6, n = 20, samples = 60;
        // Correlated inputs (a shared component) with one input that never varies.
        std::vector<double> x(samples * n);
        for (std::size_t s = 0; s < samples; ++s) {
            const double shared = normal(rng);
            for (std::size_t j = 0; j < n; ++j) x[s * n + j] = j == 7 ? 0.0 : shared + 0.5 * normal(rng);
        }
        std::vector<double> h(n * n, 0.0);
        for (std::size_t s = 0; s < samples; ++s) {
            for (std::size_t j = 0; j < n; ++j) {
                for (std::size_t k = 0; k < n; ++k) h[j * n + k] += x[s * n + j] * x[s * n + k] / double(samples);
            }
        }
        std::vector<float> w(rows * n);
        for (auto& v : w) v = float(normal(rng));
        const GptqMatrix m = gptq(MatrixView<const float>(std::span<const float>(w), rows, n), h, {bits, group});
        const std::vector<unsigned> expected = direct_gptq(w, rows, n, h, bits, group);
        std::size_t same = 0;
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < n; ++j) same += m.code(i, j) == expected[i * n + j];
        }
        CHECK(same == rows * n);
        // The input that never varies has its weights set to 0 before quantizing.
        for (std::size_t i = 0; i < rows; ++i) CHECK(m.code(i, 7) == m.grid(i, 7 / group).code(0.0, bits));
    }
}

TEST_CASE("with a diagonal Hessian GPTQ is round-to-nearest on each group's grid", "[solvers][gptq]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    const std::size_t rows = 5, n = 30, group = 8;
    std::vector<double> h(n * n, 0.0);
    for (std::size_t j = 0; j < n; ++j) h[j * n + j] = 0.1 + std::abs(normal(rng));
    std::vector<float> w(rows * n);
    for (auto& v : w) v = float(normal(rng));
    for (const std::size_t bits : {1u, 3u, 4u}) {
        const GptqMatrix m = gptq(MatrixView<const float>(std::span<const float>(w), rows, n), h, {bits, group});
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
                const std::size_t begin = j / group * group, count = std::min(group, n - begin);
                std::vector<double> original(count);
                for (std::size_t k = 0; k < count; ++k) original[k] = w[i * n + begin + k];
                const Grid g = grid_of(original.data(), count, bits);
                CAPTURE(bits, i, j);
                CHECK(m.code(i, j) == unsigned(code_on(g, w[i * n + j], bits)));
            }
        }
    }
}

TEST_CASE("a GPTQ group wider than the row, up to SIZE_MAX, is one group per row", "[solvers][gptq]") {
    std::mt19937_64 rng(9);
    std::normal_distribution<double> normal;
    const std::size_t rows = 3, n = 6;
    std::vector<double> h(n * n, 0.0);
    for (std::size_t j = 0; j < n; ++j) h[j * n + j] = 1.0 + std::abs(normal(rng));
    h[1] = h[n] = 0.3;  // a correlation, so that the error spreads
    std::vector<float> w(rows * n);
    for (auto& v : w) v = float(normal(rng));
    const MatrixView<const float> view(std::span<const float>(w), rows, n);
    const GptqMatrix whole_row = gptq(view, h, {3, n});
    for (const std::size_t group : {n + 1, std::numeric_limits<std::size_t>::max()}) {
        CAPTURE(group);
        const GptqMatrix m = gptq(view, h, {3, group});
        CHECK(m.groups_per_row() == 1);
        CHECK(m.dequantize() == whole_row.dequantize());
    }
}

TEST_CASE("GPTQ refuses bad input naming it", "[solvers][gptq]") {
    std::vector<float> w(2 * 4, 0.5f);
    std::vector<double> h(16, 0.0);
    for (std::size_t j = 0; j < 4; ++j) h[j * 4 + j] = 1.0;
    const MatrixView<const float> view(std::span<const float>(w), 2, 4);
    CHECK_THROWS_WITH(gptq(view, h, {9, 4}), Catch::Matchers::Contains("bits must be 1 to 8"));
    CHECK_THROWS_WITH(gptq(view, std::span<const double>(h).first(9), {4, 4}),
                      Catch::Matchers::Contains("4x4 Hessian"));
    std::vector<float> bad = w;
    bad[5] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(gptq(MatrixView<const float>(std::span<const float>(bad), 2, 4), h, {4, 4}),
                      Catch::Matchers::Contains("row 1 col 1"));
    std::vector<double> indefinite = h;
    indefinite[1] = indefinite[4] = 5.0;  // |off-diagonal| above the diagonal
    CHECK_THROWS_WITH(gptq(view, indefinite, {4, 4}), Catch::Matchers::Contains("not positive definite"));
}
