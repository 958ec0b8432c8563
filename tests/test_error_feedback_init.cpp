// error_feedback_init (solvers/error_feedback_init.hpp) against a direct implementation written
// here in Optimal Brain Quantization's form: the explicit inverse Hessian, downdated after each
// column, equal to the Cholesky form in exact arithmetic. With a diagonal Hessian no error moves,
// so every weight holds its group's nearest level.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/solvers/error_feedback_init.hpp>
#include <multibool/solvers/least_squares.hpp>
#include <multibool/solvers/second_moment.hpp>

#include "inverse_reference.hpp"
#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;
using multibool::testing::inverse;

namespace {

template <std::size_t K>
double level(const std::vector<double>& alphas, std::size_t code) {
    double sum = 0.0;
    for (std::size_t k = 0; k < K; ++k) sum += (code >> k) & 1 ? alphas[k] : -alphas[k];
    return sum;
}

template <std::size_t K>
std::size_t nearest(const std::vector<double>& alphas, double w) {
    std::size_t best = 0;
    for (std::size_t c = 1; c < (std::size_t{1} << K); ++c) {
        if (std::fabs(w - level<K>(alphas, c)) < std::fabs(w - level<K>(alphas, best))) best = c;
    }
    return best;
}

// A group's scales from the header's description: the greedy residual (mean |r|, sign(0) = +1),
// then rounds of least squares weighted by d (the library's semidefinite solve, tested on its own,
// which drops unknowns a short group cannot determine) and nearest codes, until no code changes.
template <std::size_t K>
std::vector<double> fit(const std::vector<double>& w, const std::vector<double>& d, std::size_t rounds) {
    std::vector<double> alphas(K), r = w;
    std::vector<std::size_t> codes(w.size(), 0);
    for (std::size_t k = 0; k < K; ++k) {
        for (double v : r) alphas[k] += std::fabs(v) / double(w.size());
        for (std::size_t j = 0; j < w.size(); ++j) {
            if (r[j] >= 0) codes[j] |= std::size_t{1} << k;
            r[j] -= r[j] >= 0 ? alphas[k] : -alphas[k];
        }
    }
    for (std::size_t round = 0; round < rounds; ++round) {
        std::vector<double> normal(K * K, 0.0), rhs(K, 0.0);
        for (std::size_t j = 0; j < w.size(); ++j) {
            for (std::size_t k = 0; k < K; ++k) {
                const double sk = (codes[j] >> k) & 1 ? 1.0 : -1.0;
                rhs[k] += d[j] * sk * w[j];
                for (std::size_t l = 0; l < K; ++l) normal[k * K + l] += d[j] * sk * ((codes[j] >> l) & 1 ? 1.0 : -1.0);
            }
        }
        solve_positive_semidefinite(normal, rhs);
        alphas = rhs;
        bool changed = false;
        for (std::size_t j = 0; j < w.size(); ++j) {
            const std::size_t c = nearest<K>(alphas, w[j]);
            changed = changed || c != codes[j];
            codes[j] = c;
        }
        if (!changed) break;
    }
    return alphas;
}

struct Direct {
    std::vector<std::size_t> codes;  // rows x n
    std::vector<double> alphas;      // rows x groups x K
};

// Column by column: when a group is entered its scales are fitted to the weights as moved so
// far, weighted by 1 / [H_F^-1]_jj with F the columns from j on; then column j takes its nearest
// level, the columns after it move by -(w_j - level) / [H_F^-1]_jj * [H_F^-1]_j,k, and j leaves F.
template <std::size_t K>
Direct direct(const std::vector<float>& weights, std::size_t rows, std::size_t n, std::vector<double> h,
              std::size_t group) {
    double mean = 0;
    for (std::size_t j = 0; j < n; ++j) mean += h[j * n + j] / double(n);
    for (std::size_t j = 0; j < n; ++j) h[j * n + j] += 0.01 * mean;
    std::vector<double> d(n);
    for (std::size_t j = 0; j < n; ++j) {
        const std::size_t m = n - j;
        std::vector<double> trailing(m * m);
        for (std::size_t a = 0; a < m; ++a) {
            for (std::size_t b = 0; b < m; ++b) trailing[a * m + b] = h[(j + a) * n + j + b];
        }
        d[j] = 1.0 / inverse(trailing, m)[0];
    }
    const std::vector<double> start = inverse(h, n);
    Direct out{std::vector<std::size_t>(rows * n), {}};
    for (std::size_t i = 0; i < rows; ++i) {
        std::vector<double> hinv = start;
        std::vector<double> w(weights.begin() + std::ptrdiff_t(i * n), weights.begin() + std::ptrdiff_t(i * n + n));
        std::vector<double> alphas;
        for (std::size_t j = 0; j < n; ++j) {
            if (j % group == 0) {
                const std::size_t end = std::min(n, j + group);
                alphas = fit<K>({w.begin() + std::ptrdiff_t(j), w.begin() + std::ptrdiff_t(end)},
                                {d.begin() + std::ptrdiff_t(j), d.begin() + std::ptrdiff_t(end)}, 10);
                for (double& a : alphas) a = double(float(a));  // stored as float
                out.alphas.insert(out.alphas.end(), alphas.begin(), alphas.end());
            }
            const std::size_t code = nearest<K>(alphas, w[j]);
            out.codes[i * n + j] = code;
            const double pivot = hinv[j * n + j];
            const double error = (w[j] - level<K>(alphas, code)) / pivot;
            for (std::size_t k = j + 1; k < n; ++k) w[k] -= error * hinv[j * n + k];
            const std::vector<double> column(hinv.begin() + std::ptrdiff_t(j * n),
                                             hinv.begin() + std::ptrdiff_t(j * n + n));
            for (std::size_t r = 0; r < n; ++r) {
                for (std::size_t k = 0; k < n; ++k) hinv[r * n + k] -= column[r] * column[k] / pivot;
            }
        }
    }
    return out;
}

template <class M>
std::size_t code_of(const M& m, std::size_t i, std::size_t j) {
    std::size_t code = 0;
    for (std::size_t k = 0; k < M::kernels; ++k) code |= std::size_t(m.sign(k, i, j) > 0) << k;
    return code;
}

// Inputs with a shared component, so that H is far from diagonal.
SecondMoment correlated_moment(std::size_t n, std::size_t samples, std::mt19937_64& rng) {
    std::normal_distribution<double> normal;
    std::vector<float> x(samples * n);
    for (std::size_t s = 0; s < samples; ++s) {
        const double shared = normal(rng);
        for (std::size_t j = 0; j < n; ++j) x[s * n + j] = float(shared + 0.5 * normal(rng));
    }
    SecondMoment h(n);
    h.accumulate(MatrixView<const float>(std::span<const float>(x), samples, n));
    return h;
}

}  // namespace

TEST_CASE("error_feedback_init gives the bits and scales of the direct column-by-column implementation",
          "[solvers][error_feedback]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 5, n = 20;
    const SecondMoment h = correlated_moment(n, 60, rng);
    const std::vector<float> w = testing::random_floats(rows * n, rng);
    const MatrixView<const float> target(std::span<const float>(w), rows, n);
    const auto check = [&]<class M>() {
        constexpr std::size_t K = M::kernels;
        CAPTURE(K, M::group_size_parameter);
        const M m = error_feedback_init<M>(target, h);
        const Direct expected = direct<K>(w, rows, n, h.dense(), m.group_size());
        std::size_t same = 0;
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < n; ++j) same += code_of(m, i, j) == expected.codes[i * n + j];
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                for (std::size_t k = 0; k < K; ++k) {
                    CHECK(double(m.scales(k, i)[g]) ==
                          Approx(expected.alphas[(i * m.groups_per_row() + g) * K + k]).epsilon(1e-6));
                }
            }
        }
        CHECK(same == rows * n);
    };
    check.template operator()<BitPlaneMatrix<1, 8>>();
    check.template operator()<BitPlaneMatrix<2, 8>>();
    check.template operator()<BitPlaneMatrix<3, 6>>();
}

TEST_CASE("with a diagonal H error_feedback_init moves no error: each weight holds its group's nearest level",
          "[solvers][error_feedback]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 4, n = 24;
    std::vector<float> x(n * n, 0.0f);
    for (std::size_t j = 0; j < n; ++j) x[j * n + j] = float(1 + j % 5);  // one input per sample
    SecondMoment h(n);
    h.accumulate(MatrixView<const float>(std::span<const float>(x), n, n));
    const std::vector<float> w = testing::random_floats(rows * n, rng);
    using M = BitPlaneMatrix<3, 8>;
    const M m = error_feedback_init<M>(MatrixView<const float>(std::span<const float>(w), rows, n), h);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            std::vector<double> alphas;
            for (std::size_t k = 0; k < 3; ++k) alphas.push_back(m.scales(k, i)[j / 8]);
            const double held = std::fabs(w[i * n + j] - level<3>(alphas, code_of(m, i, j)));
            for (std::size_t c = 0; c < 8; ++c) CHECK(held <= std::fabs(w[i * n + j] - level<3>(alphas, c)));
        }
    }
}

TEST_CASE("error_feedback_init refuses NaN weights, a wrong second moment and a bad damping",
          "[solvers][error_feedback]") {
    using M = BitPlaneMatrix<2, 8>;
    std::vector<float> w(3 * 16, 0.5f);
    const MatrixView<const float> target(std::span<const float>(w), 3, 16);
    SecondMoment h(16);
    std::vector<float> x(16, 1.0f);
    h.accumulate(std::span<const float>(x));
    REQUIRE_THROWS_WITH((error_feedback_init<M>(target, SecondMoment(15))),
                        Catch::Contains("error_feedback_init: the second moment is 15x15 but the matrix has 16"));
    REQUIRE_THROWS_WITH((error_feedback_init<M>(target, h, 10, -1.0)),
                        Catch::Contains("error_feedback_init: the damping must be a finite number >= 0"));
    w[2 * 16 + 5] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH((error_feedback_init<M>(target, h)),
                        Catch::Contains("error_feedback_init: weight at row 2 col 5 of a 3x16 matrix is nan"));
}
