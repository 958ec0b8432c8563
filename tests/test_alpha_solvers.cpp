#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/solvers/activation_aware_solver.hpp>
#include <multibool/solvers/alpha_solver.hpp>
#include <multibool/solvers/greedy_residual.hpp>
#include <multibool/solvers/least_squares.hpp>
#include <multibool/solvers/output_space_solver.hpp>
#include <multibool/solvers/second_moment.hpp>
#include <multibool/solvers/weight_space_solver.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

static_assert(AlphaSolver<WeightSpaceSolver, BitPlaneMatrix<2, 64>>);
static_assert(AlphaSolver<ActivationAwareSolver, BitPlaneMatrix<3, 32, float, std::uint8_t>>);
static_assert(AlphaSolver<OutputSpaceSolver, BitPlaneMatrix<1, per_row>>);

namespace {

// Everything below is the test's own double-precision reference: dense design matrices built
// from BitPlaneMatrix::sign, explicit products, Gaussian elimination with partial pivoting.

// The four objectives as the metric Q each puts on a row's error e: e^T Q e.
enum class Metric { identity, diagonal, group, full };

// Calibration inputs (every seventh input ten times larger, as outlier features are) and
// their second moment computed directly.
struct Calibration {
    std::size_t dimension;
    std::vector<float> inputs;
    std::vector<double> h;
};

Calibration random_calibration(std::size_t dimension, std::size_t count, std::mt19937_64& rng) {
    Calibration c{dimension, testing::random_floats(count * dimension, rng),
                  std::vector<double>(dimension * dimension)};
    for (std::size_t t = 0; t < count; ++t) {
        for (std::size_t j = 0; j < dimension; j += 7) c.inputs[t * dimension + j] *= 10.0f;
    }
    for (std::size_t t = 0; t < count; ++t) {
        for (std::size_t a = 0; a < dimension; ++a) {
            for (std::size_t b = 0; b < dimension; ++b) {
                c.h[a * dimension + b] +=
                    double(c.inputs[t * dimension + a]) * double(c.inputs[t * dimension + b]) / double(count);
            }
        }
    }
    return c;
}

SecondMoment second_moment_of(const Calibration& c) {
    SecondMoment h(c.dimension);
    h.accumulate(MatrixView<const float>(std::span<const float>(c.inputs), c.inputs.size() / c.dimension, c.dimension));
    return h;
}

std::vector<double> metric_matrix(Metric metric, std::span<const double> h, std::size_t n, std::size_t group) {
    std::vector<double> q(n * n, 0.0);
    for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t b = 0; b < n; ++b) {
            const bool keep = metric == Metric::full || (metric == Metric::group && a / group == b / group) || a == b;
            if (keep) q[a * n + b] = metric == Metric::identity ? 1.0 : h[a * n + b];
        }
    }
    return q;
}

template <class F>
void with_solver(Metric metric, const SecondMoment& h, F&& f) {
    switch (metric) {
        case Metric::identity:
            return f(WeightSpaceSolver{});
        case Metric::diagonal:
            return f(ActivationAwareSolver(h, HessianBlock::diagonal));
        case Metric::group:
            return f(ActivationAwareSolver(h, HessianBlock::group));
        case Metric::full:
            return f(OutputSpaceSolver(h));
    }
}

template <class M>
std::vector<double> reconstruct_row(const M& m, std::size_t i) {
    std::vector<double> w_hat(m.cols(), 0.0);
    for (std::size_t j = 0; j < m.cols(); ++j) {
        for (std::size_t k = 0; k < M::kernels; ++k) {
            w_hat[j] += static_cast<double>(m.scale(k, i, j / m.group_size())) * m.sign(k, i, j);
        }
    }
    return w_hat;
}

template <class M>
double reference_objective(const M& m, std::span<const float> w, std::span<const double> q) {
    const std::size_t n = m.cols();
    double total = 0.0;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        const auto w_hat = reconstruct_row(m, i);
        for (std::size_t a = 0; a < n; ++a) {
            for (std::size_t b = 0; b < n; ++b) {
                total += (w[i * n + a] - w_hat[a]) * q[a * n + b] * (w[i * n + b] - w_hat[b]);
            }
        }
    }
    return total;
}

// Solves a x = b; nullopt when a pivot is negligible next to the largest diagonal entry.
std::optional<std::vector<double>> reference_solve(std::vector<double> a, std::vector<double> b) {
    const std::size_t n = b.size();
    double largest = 0.0;
    for (std::size_t j = 0; j < n; ++j) largest = std::max(largest, std::fabs(a[j * n + j]));
    for (std::size_t c = 0; c < n; ++c) {
        std::size_t pivot = c;
        for (std::size_t r = c + 1; r < n; ++r) {
            if (std::fabs(a[r * n + c]) > std::fabs(a[pivot * n + c])) pivot = r;
        }
        if (!(std::fabs(a[pivot * n + c]) > 1e-9 * largest)) return std::nullopt;
        for (std::size_t col = 0; col < n; ++col) std::swap(a[c * n + col], a[pivot * n + col]);
        std::swap(b[c], b[pivot]);
        for (std::size_t r = c + 1; r < n; ++r) {
            const double f = a[r * n + c] / a[c * n + c];
            for (std::size_t col = c; col < n; ++col) a[r * n + col] -= f * a[c * n + col];
            b[r] -= f * b[c];
        }
    }
    std::vector<double> x(n);
    for (std::size_t c = n; c-- > 0;) {
        double v = b[c];
        for (std::size_t col = c + 1; col < n; ++col) v -= a[c * n + col] * x[col];
        x[c] = v / a[c * n + c];
    }
    return x;
}

// The unknowns (kernel, group) of one system: a (row, group), or the whole row for the full H.
using Unknowns = std::vector<std::pair<std::size_t, std::size_t>>;

template <class M>
std::vector<Unknowns> systems_of_a_row(const M& m, Metric metric) {
    std::vector<Unknowns> systems;
    for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
        if (metric != Metric::full || systems.empty()) systems.emplace_back();
        for (std::size_t k = 0; k < M::kernels; ++k) systems.back().emplace_back(k, g);
    }
    return systems;
}

// N = D^T Q D and r = D^T Q w for row i, D's columns the signs of (k, g) on group g, else 0.
template <class M>
std::pair<std::vector<double>, std::vector<double>> normal_equations(const M& m, std::size_t i,
                                                                     std::span<const float> w,
                                                                     std::span<const double> q,
                                                                     const Unknowns& unknowns) {
    const std::size_t n = m.cols();
    const std::size_t u = unknowns.size();
    std::vector<double> design(n * u, 0.0);
    for (std::size_t c = 0; c < u; ++c) {
        const auto [k, g] = unknowns[c];
        for (std::size_t j = 0; j < n; ++j) {
            if (j / m.group_size() == g) design[j * u + c] = m.sign(k, i, j);
        }
    }
    std::vector<double> q_design(n * u, 0.0);
    std::vector<double> q_w(n, 0.0);
    for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t b = 0; b < n; ++b) {
            for (std::size_t c = 0; c < u; ++c) q_design[a * u + c] += q[a * n + b] * design[b * u + c];
            q_w[a] += q[a * n + b] * w[i * n + b];
        }
    }
    std::vector<double> normal(u * u, 0.0);
    std::vector<double> rhs(u, 0.0);
    for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t c = 0; c < u; ++c) {
            for (std::size_t d = 0; d < u; ++d) normal[c * u + d] += design[a * u + c] * q_design[a * u + d];
            rhs[c] += design[a * u + c] * q_w[a];
        }
    }
    return {normal, rhs};
}

// Solves `start` with the metric's solver and checks it against the reference: the reported
// objectives, never worse, never NaN; in every non-singular system the reference's scales, in
// every singular one a minimiser (zero gradient); one fallback per singular system.
template <class M>
AlphaSolveReport check_against_reference(const M& start, std::span<const float> w, Metric metric,
                                         std::span<const double> h_reference, const SecondMoment& h) {
    const std::size_t n = start.cols();
    const auto q = metric_matrix(metric, h_reference, n, start.group_size());
    M m = start;
    AlphaSolveReport report;
    with_solver(metric, h, [&](const auto& solver) { report = solver.solve(m, {w, m.rows(), n}); });
    const double before = reference_objective(start, w, q);
    const double after = reference_objective(m, w, q);
    CAPTURE(before, after, report.error_before, report.error_after);
    REQUIRE(report.error_before == Approx(before).epsilon(1e-9).margin(1e-9));
    REQUIRE(report.error_after == Approx(after).epsilon(1e-9).margin(1e-9));
    REQUIRE(report.error_after <= report.error_before);
    REQUIRE(after <= before * (1.0 + 1e-12) + 1e-12);
    for (const auto a : m.scale_data()) REQUIRE(std::isfinite(static_cast<double>(a)));
    // Stored scales are the solution rounded to the scale type: 24 bits for float, 11 or 8 for
    // fp16 and bf16.
    constexpr double tolerance = sizeof(typename M::scale_type) == 2 ? 1e-2 : 1e-5;
    std::size_t singular = 0;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (const auto& unknowns : systems_of_a_row(m, metric)) {
            const auto [normal, rhs] = normal_equations(m, i, w, q, unknowns);
            const auto reference = reference_solve(normal, rhs);
            CAPTURE(i, unknowns.front().second);
            if (reference) {
                double largest = 0.0;
                for (const double a : *reference) largest = std::max(largest, std::fabs(a));
                for (std::size_t c = 0; c < unknowns.size(); ++c) {
                    const auto [k, g] = unknowns[c];
                    CAPTURE(k, g);
                    REQUIRE(static_cast<double>(m.scale(k, i, g)) ==
                            Approx((*reference)[c]).epsilon(10 * tolerance).margin(tolerance * largest));
                }
                continue;
            }
            ++singular;
            const std::size_t u = unknowns.size();
            double scale = 0.0;
            for (std::size_t c = 0; c < u; ++c) scale = std::max(scale, std::fabs(rhs[c]));
            for (std::size_t c = 0; c < u * u; ++c) {
                const auto alpha = static_cast<double>(m.scale(unknowns[c % u].first, i, unknowns[c % u].second));
                scale = std::max(scale, std::fabs(normal[c] * alpha));
            }
            for (std::size_t c = 0; c < u; ++c) {
                double gradient = rhs[c];
                for (std::size_t d = 0; d < u; ++d) {
                    gradient -=
                        normal[c * u + d] * static_cast<double>(m.scale(unknowns[d].first, i, unknowns[d].second));
                }
                CAPTURE(c, gradient, scale);
                REQUIRE(std::fabs(gradient) <= tolerance * scale + 1e-12);
            }
        }
    }
    REQUIRE(report.fallbacks == singular);
    return report;
}

constexpr Metric all_metrics[] = {Metric::identity, Metric::diagonal, Metric::group, Metric::full};

// The parameter grid of the solver tests: several K <= 4, G in {32, 64, per row}, u8 and u64,
// float scales and the 16-bit ones (a class type).
template <class F>
void for_each_matrix_type(F&& f) {
    f.template operator()<BitPlaneMatrix<1, 32, float, std::uint8_t>>();
    f.template operator()<BitPlaneMatrix<2, 64, float, std::uint64_t>>();
    f.template operator()<BitPlaneMatrix<3, per_row, float, std::uint8_t>>();
    f.template operator()<BitPlaneMatrix<4, 32, float, std::uint64_t>>();
    f.template operator()<BitPlaneMatrix<4, 64, float, std::uint8_t>>();
    f.template operator()<BitPlaneMatrix<2, per_row, float, std::uint64_t>>();
    f.template operator()<BitPlaneMatrix<3, 64, half, std::uint64_t>>();
    f.template operator()<BitPlaneMatrix<2, 32, bfloat16, std::uint8_t>>();
}

}  // namespace

TEST_CASE("SecondMoment equals the directly computed E[x x^T]", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const std::size_t n : {1, 7, 64, 172}) {
        CAPTURE(n);
        SecondMoment h(n);
        REQUIRE(h.dimension() == n);
        REQUIRE(h.samples() == 0);
        REQUIRE(h(n - 1, 0) == 0.0);
        std::vector<float> all;
        // Single vectors and batches around the accumulation block (32 rows).
        for (const std::size_t batch : {1, 31, 32, 33, 1, 70}) {
            const auto xs = testing::random_floats(batch * n, rng, 3.0f);
            if (batch == 1) {
                h.accumulate(std::span<const float>(xs));
            } else {
                h.accumulate(MatrixView<const float>(std::span<const float>(xs), batch, n));
            }
            all.insert(all.end(), xs.begin(), xs.end());
        }
        const std::size_t count = all.size() / n;
        REQUIRE(h.samples() == count);
        for (std::size_t a = 0; a < n; ++a) {
            for (std::size_t b = 0; b < n; ++b) {
                double expected = 0.0;
                for (std::size_t t = 0; t < count; ++t) expected += double(all[t * n + a]) * double(all[t * n + b]);
                expected /= double(count);
                CAPTURE(a, b);
                REQUIRE(h(a, b) == Approx(expected).epsilon(1e-12).margin(1e-12));
            }
        }
    }
}

TEST_CASE("SecondMoment refuses wrong lengths and non-finite inputs, adding nothing", "[solvers]") {
    SecondMoment h(4);
    const std::vector<float> five(5, 1.0f);
    REQUIRE_THROWS_WITH(h.accumulate(std::span<const float>(five)),
                        Catch::Contains("input has 5 elements, expected 4"));
    REQUIRE_THROWS_WITH(h.accumulate(MatrixView<const float>(std::span<const float>(five), 1, 5)),
                        Catch::Contains("has 5 elements, expected 4"));
    std::vector<float> batch(3 * 4, 1.0f);
    batch[2 * 4 + 3] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(h.accumulate(MatrixView<const float>(std::span<const float>(batch), 3, 4)),
                        Catch::Contains("input 2 element 3 is nan"));
    batch[2 * 4 + 3] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(h.accumulate(MatrixView<const float>(std::span<const float>(batch), 3, 4)),
                        Catch::Contains("input 2 element 3 is inf"));
    REQUIRE(h.samples() == 0);
    REQUIRE(h(0, 0) == 0.0);
    REQUIRE_THROWS_AS(h(4, 0), std::out_of_range);
}

TEST_CASE("solve_positive_semidefinite: Cholesky, dropping dependent unknowns", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t n = 6;
    // a = F^T F from a random 8 x 6 F: positive definite.
    const auto f = testing::random_floats(8 * n, rng);
    std::vector<double> a(n * n, 0.0);
    for (std::size_t r = 0; r < 8; ++r) {
        for (std::size_t c = 0; c < n; ++c) {
            for (std::size_t d = 0; d < n; ++d) a[c * n + d] += double(f[r * n + c]) * double(f[r * n + d]);
        }
    }
    const auto rhs = testing::random_floats(n, rng);
    std::vector<double> b(rhs.begin(), rhs.end());
    const auto expected = reference_solve(a, b);
    REQUIRE(expected);
    auto factor = a;
    auto x = b;
    REQUIRE(solve_positive_semidefinite(factor, x) == 0);
    for (std::size_t c = 0; c < n; ++c) REQUIRE(x[c] == Approx((*expected)[c]).epsilon(1e-9).margin(1e-9));

    // Unknown 4 a copy of unknown 1 (duplicate planes): it is dropped, the rest solve the system
    // without it, which still satisfies a x = b for a consistent b.
    for (std::size_t c = 0; c < n; ++c) a[4 * n + c] = a[1 * n + c];
    for (std::size_t c = 0; c < n; ++c) a[c * n + 4] = a[c * n + 1];
    b[4] = b[1];
    factor = a;
    x = b;
    REQUIRE(solve_positive_semidefinite(factor, x) == 1);
    REQUIRE(x[4] == 0.0);
    for (std::size_t c = 0; c < n; ++c) {
        double ax = 0.0;
        for (std::size_t d = 0; d < n; ++d) ax += a[c * n + d] * x[d];
        REQUIRE(ax == Approx(b[c]).epsilon(1e-9).margin(1e-9));
    }

    std::vector<double> zero(n * n, 0.0);
    x = b;
    REQUIRE(solve_positive_semidefinite(zero, x) == n);
    for (const double v : x) REQUIRE(v == 0.0);

    a[2 * n + 3] = std::numeric_limits<double>::quiet_NaN();
    REQUIRE_THROWS_WITH(solve_positive_semidefinite(a, x), Catch::Contains("matrix entry (2, 3) is nan"));
    REQUIRE_THROWS_WITH(solve_positive_semidefinite(std::span<double>(a).first(5), x),
                        Catch::Contains("has 5 elements, expected 36"));
}

TEST_CASE("every solver matches a dense least-squares reference on random problems", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for_each_matrix_type([&]<class M>() {
        for (const std::size_t cols : {100, 172}) {
            const std::size_t rows = 5;
            const auto w = testing::random_floats(rows * cols, rng);
            const auto calibration = random_calibration(cols, 2 * cols + 10, rng);
            const auto h = second_moment_of(calibration);
            for (const Metric metric : all_metrics) {
                CAPTURE(M::kernels, M::group_size_parameter, M::word_bits, cols, int(metric));
                const auto start = testing::random_matrix<M>(rows, cols, rng);
                const auto report = check_against_reference(start, w, metric, calibration.h, h);
                REQUIRE(report.error_after < report.error_before);
                // From the greedy start too, which solve must never make worse.
                const auto greedy = greedy_residual<M>({std::span<const float>(w), rows, cols});
                check_against_reference(greedy, w, metric, calibration.h, h);
            }
        }
    });
}

TEST_CASE("solvers fall back on duplicate planes without NaN or a worse objective", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 4, cols = 100;
    const auto w = testing::random_floats(rows * cols, rng);
    const auto calibration = random_calibration(cols, 2 * cols, rng);
    const auto h = second_moment_of(calibration);
    for_each_matrix_type([&]<class M>() {
        if constexpr (M::kernels >= 2) {
            // Plane K-1 a copy of plane 0: every system is singular.
            const auto random = testing::random_matrix<M>(rows, cols, rng);
            std::vector<std::int8_t> signs;
            for (std::size_t k = 0; k < M::kernels; ++k) {
                for (std::size_t i = 0; i < rows; ++i) {
                    for (std::size_t j = 0; j < cols; ++j) {
                        signs.push_back(std::int8_t(random.sign(k + 1 == M::kernels ? 0 : k, i, j)));
                    }
                }
            }
            const auto start = M::from_planes(rows, cols, signs, random.scale_data());
            for (const Metric metric : all_metrics) {
                CAPTURE(M::kernels, M::group_size_parameter, int(metric));
                const auto report = check_against_reference(start, w, metric, calibration.h, h);
                const std::size_t systems = metric == Metric::full ? rows : rows * start.groups_per_row();
                REQUIRE(report.fallbacks == systems);
            }
        }
    });
}

TEST_CASE("an all-zero target group gets zero scales", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using M = BitPlaneMatrix<3, 32, float, std::uint8_t>;
    const std::size_t rows = 3, cols = 100;
    auto w = testing::random_floats(rows * cols, rng);
    for (std::size_t i = 0; i < rows; ++i) std::fill_n(w.begin() + i * cols + 32, 32, 0.0f);
    const auto start = testing::random_matrix<M>(rows, cols, rng);
    const auto calibration = random_calibration(cols, 2 * cols, rng);
    const auto h = second_moment_of(calibration);
    for (const Metric metric : {Metric::identity, Metric::diagonal, Metric::group}) {
        CAPTURE(int(metric));
        M m = start;
        with_solver(metric, h, [&](const auto& solver) { solver.solve(m, {std::span<const float>(w), rows, cols}); });
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t k = 0; k < 3; ++k) REQUIRE(m.scale(k, i, 1) == 0.0f);
        }
        check_against_reference(start, w, metric, calibration.h, h);
    }
}

TEST_CASE("activation-aware solvers fall back on zero-variance, constant and zero H", "[solvers]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 4, cols = 100;
    const auto w = testing::random_floats(rows * cols, rng);

    // Inputs 32..63 never vary: group 1 of a G = 32 matrix has H_g = 0.
    auto silent = random_calibration(cols, 2 * cols, rng);
    for (std::size_t t = 0; t < 2 * cols; ++t) std::fill_n(silent.inputs.begin() + t * cols + 32, 32, 0.0f);
    for (std::size_t a = 0; a < cols; ++a) {
        for (std::size_t b = 0; b < cols; ++b) {
            if ((a >= 32 && a < 64) || (b >= 32 && b < 64)) silent.h[a * cols + b] = 0.0;
        }
    }
    // Every input the same vector of equal entries: H = c^2 1 1^T, rank one.
    const Calibration constant{cols, std::vector<float>(3 * cols, 0.5f), std::vector<double>(cols * cols, 0.25)};
    // No inputs at all: H = 0.
    const Calibration none{cols, {}, std::vector<double>(cols * cols, 0.0)};
    const Calibration* const calibrations[] = {&silent, &constant, &none};

    for_each_matrix_type([&]<class M>() {
        const auto start = testing::random_matrix<M>(rows, cols, rng);
        for (const Calibration* calibration : calibrations) {
            const SecondMoment h = calibration->inputs.empty() ? SecondMoment(cols) : second_moment_of(*calibration);
            for (const Metric metric : {Metric::diagonal, Metric::group, Metric::full}) {
                CAPTURE(M::kernels, M::group_size_parameter, int(metric), h.samples());
                const auto report = check_against_reference(start, w, metric, calibration->h, h);
                if (calibration == &none) {
                    // Nothing to fit: every system falls back and the scales stay as they were.
                    REQUIRE(report.error_after == 0.0);
                    REQUIRE(report.fallbacks == (metric == Metric::full ? rows : rows * start.groups_per_row()));
                    M m = start;
                    with_solver(metric, h, [&](const auto& solver) {
                        solver.solve(m, {std::span<const float>(w), rows, cols});
                    });
                    REQUIRE(m == start);
                }
            }
        }
    });
}

TEST_CASE("solvers refuse a wrong H dimension, a wrong target shape and a NaN target", "[solvers]") {
    using M = BitPlaneMatrix<2, 32>;
    M m(3, 40);
    const std::vector<float> w(3 * 40, 1.0f);
    const MatrixView<const float> target(std::span<const float>(w), 3, 40);
    const MatrixView<const float> transposed(std::span<const float>(w), 40, 3);
    auto with_nan = w;
    with_nan[2 * 40 + 5] = std::numeric_limits<float>::quiet_NaN();
    const MatrixView<const float> nan_target(std::span<const float>(with_nan), 3, 40);
    const SecondMoment wrong(39);
    const SecondMoment right(40);

    REQUIRE_THROWS_WITH((ActivationAwareSolver(wrong, HessianBlock::group).solve(m, target)),
                        Catch::Contains("second moment is 39x39 but the matrix has 40 columns"));
    REQUIRE_THROWS_WITH((ActivationAwareSolver(wrong, HessianBlock::diagonal).row_objectives(m, target)),
                        Catch::Contains("second moment is 39x39 but the matrix has 40 columns"));
    REQUIRE_THROWS_WITH((OutputSpaceSolver(wrong).solve(m, target)),
                        Catch::Contains("OutputSpaceSolver: the second moment is 39x39 but the matrix has 40 columns"));
    with_solver(Metric::identity, right, [&](const auto& solver) {
        REQUIRE_THROWS_WITH((solver.solve(m, transposed)), Catch::Contains("target is 40x3, the matrix is 3x40"));
        REQUIRE_THROWS_WITH((solver.solve(m, nan_target)), Catch::Contains("target at row 2 col 5 is nan"));
    });
    for (const Metric metric : {Metric::diagonal, Metric::group, Metric::full}) {
        with_solver(metric, right, [&](const auto& solver) {
            REQUIRE_THROWS_WITH((solver.solve(m, transposed)), Catch::Contains("target is 40x3, the matrix is 3x40"));
            REQUIRE_THROWS_WITH((solver.solve(m, nan_target)), Catch::Contains("target at row 2 col 5 is nan"));
            REQUIRE_THROWS_WITH((solver.row_objectives(m, nan_target)),
                                Catch::Contains("target at row 2 col 5 is nan"));
        });
    }
    REQUIRE(m == M(3, 40));
}
