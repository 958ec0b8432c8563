// Output-space refinement: the coordinate-descent bit step against brute force on small rows,
// and the whole refinement's objective never increasing on correlated calibration data.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/solvers/alternating_refinement.hpp>
#include <multibool/solvers/greedy_residual.hpp>
#include <multibool/solvers/output_space_refinement.hpp>
#include <multibool/solvers/second_moment.hpp>

#include "test_support.hpp"

using namespace multibool;

namespace {

// Inputs whose channels are correlated (a shared factor) and a few of them large: the case where
// a diagonal view of H misjudges which bits matter.
SecondMoment correlated_moment(std::size_t n, std::size_t samples, std::mt19937_64& rng) {
    SecondMoment h(n);
    std::normal_distribution<float> normal;
    std::vector<float> mixing = testing::random_floats(n, rng);
    std::vector<float> x(n);
    for (std::size_t t = 0; t < samples; ++t) {
        const float shared = normal(rng);
        for (std::size_t j = 0; j < n; ++j)
            x[j] = normal(rng) + 2.0f * mixing[j] * shared + (j % 17 == 0 ? 5.0f * normal(rng) : 0.0f);
        h.accumulate(x);
    }
    return h;
}

// (w - w_hat)^T H (w - w_hat) of row i, from the matrix's own weights, in double.
template <class M>
double row_objective(const M& m, const std::vector<float>& w, const SecondMoment& h, std::size_t i) {
    const std::size_t n = m.cols();
    double total = 0.0;
    for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t b = 0; b < n; ++b) {
            total += (double(w[i * n + a]) - double(m.weight(i, a))) * h(a, b) *
                     (double(w[i * n + b]) - double(m.weight(i, b)));
        }
    }
    return total;
}

}  // namespace

TEST_CASE("the output-space bit step reaches a point no single weight's level change improves", "[solvers][output]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using M = BitPlaneMatrix<2, 8, float, std::uint64_t>;
    const std::size_t rows = 3;
    const std::size_t cols = 20;
    const SecondMoment h = correlated_moment(cols, 400, rng);
    const std::vector<float> w = testing::random_floats(rows * cols, rng);
    const MatrixView<const float> target(std::span<const float>(w), rows, cols);
    M m = greedy_residual<M>(target);
    std::vector<double> before(rows);
    for (std::size_t i = 0; i < rows; ++i) before[i] = row_objective(m, w, h, i);
    assign_bits_output_space(m, target, h, 50);
    for (std::size_t i = 0; i < rows; ++i) {
        const double converged = row_objective(m, w, h, i);
        CHECK(converged <= before[i] * (1 + 1e-12));
        // Brute force: every other sign pattern of every single weight is no better.
        for (std::size_t j = 0; j < cols; ++j) {
            for (int pattern = 0; pattern < 4; ++pattern) {
                M trial = m;
                trial.set_sign(0, i, j, (pattern & 1) ? 1 : -1);
                trial.set_sign(1, i, j, (pattern & 2) ? 1 : -1);
                CHECK(row_objective(trial, w, h, i) >= converged * (1 - 1e-9) - 1e-12);
            }
        }
    }
}

TEST_CASE("output-space refinement never increases the objective and beats the act-aware start", "[solvers][output]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 12;
    const std::size_t cols = 100;  // ragged last group at G = 32
    for (int trial = 0; trial < 6; ++trial) {
        const SecondMoment h = correlated_moment(cols, 300, rng);
        const std::vector<float> w = testing::random_floats(rows * cols, rng);
        const MatrixView<const float> target(std::span<const float>(w), rows, cols);
        const auto check = [&]<class M>() {
            M m = activation_aware_init<M>(target, h, 4);
            const std::vector<double> objectives = output_space_refinement(m, target, h, 4);
            REQUIRE(objectives.size() % 2 == 1);
            REQUIRE(objectives.size() <= 9);
            for (std::size_t s = 1; s < objectives.size(); ++s) CHECK(objectives[s] <= objectives[s - 1]);
            double direct = 0.0;
            for (std::size_t i = 0; i < rows; ++i) direct += row_objective(m, w, h, i);
            // weight() sums the levels in float; the solver in double.
            CHECK(objectives.back() == Approx(direct).epsilon(1e-6));
            CHECK(objectives.back() < objectives.front());
        };
        check.template operator()<BitPlaneMatrix<2, 32, float, std::uint64_t>>();
        check.template operator()<BitPlaneMatrix<3, 32, half, std::uint8_t>>();
    }
}

TEST_CASE("the output-space bit step refuses a second moment or target of the wrong size", "[solvers][output]") {
    std::mt19937_64 rng(testing::fresh_seed());
    using M = BitPlaneMatrix<2, 32>;
    const std::vector<float> w = testing::random_floats(2 * 40, rng);
    M m = greedy_residual<M>(MatrixView<const float>(std::span<const float>(w), 2, 40));
    const SecondMoment wrong(39);
    REQUIRE_THROWS_AS(assign_bits_output_space(m, MatrixView<const float>(std::span<const float>(w), 2, 40), wrong),
                      std::invalid_argument);
    const SecondMoment h(40);
    REQUIRE_THROWS_AS(assign_bits_output_space(m, MatrixView<const float>(std::span<const float>(w), 4, 20), h),
                      std::invalid_argument);
}
