#pragma once
// A start for the output-space objective from GPTQ's column order and error feedback (Frantar et
// al., ICLR 2023) with multi-Boolean levels in place of GPTQ's uniform grid. Per row, a group's K
// scales are fitted when the group is entered, to the weights as the earlier columns' errors left
// them; each column then takes its nearest level, and its error, divided by U_jj, is spread over
// the columns not yet coded through row j of U, the upper Cholesky factor of the damped H^-1.
// Coordinate descent from the other starts stalls in a local minimum at K >= 3; this start
// reaches lower output errors there (docs/METHOD.md §3, examples/README.md).
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/gptq.hpp"
#include "multibool/solvers/least_squares.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

namespace detail {

// The level of sign code `code` (bit k set: plane k is +1), summed in kernel order.
template <std::size_t K>
double code_level(std::span<const double, K> alphas, std::size_t code) noexcept {
    double level = 0.0;
    for (std::size_t k = 0; k < K; ++k) level += (code >> k) & 1 ? alphas[k] : -alphas[k];
    return level;
}

template <std::size_t K>
std::size_t nearest_code(std::span<const double, K> alphas, double w) noexcept {
    std::size_t best = 0;
    double best_distance = std::numeric_limits<double>::infinity();
    for (std::size_t code = 0; code < (std::size_t{1} << K); ++code) {
        const double distance = std::fabs(w - code_level<K>(alphas, code));
        if (distance < best_distance) {
            best_distance = distance;
            best = code;
        }
    }
    return best;
}

// K scales for one group's values w under the weights d >= 0 (each column's sequential cost
// 1/U_jj^2, 0 for an input that never varies): the greedy
// residual start, then `rounds` of {weighted least-squares scales; nearest codes}, both exact for
// this objective, so it never increases; stops when the codes stop changing.
template <std::size_t K>
std::array<double, K> fit_group_scales(std::span<const double> w, std::span<const double> d, std::size_t rounds,
                                       std::vector<std::size_t>& codes) {
    const std::size_t size = w.size();
    std::array<double, K> alphas{};
    codes.assign(size, 0);
    std::vector<double> residual(w.begin(), w.end());
    for (std::size_t k = 0; k < K; ++k) {
        double sum_abs = 0.0;
        for (double r : residual) sum_abs += std::fabs(r);
        alphas[k] = sum_abs / double(size);
        for (std::size_t j = 0; j < size; ++j) {
            const bool positive = residual[j] >= 0.0;
            if (positive) codes[j] |= std::size_t{1} << k;
            residual[j] -= positive ? alphas[k] : -alphas[k];
        }
    }
    std::array<double, K * K> normal{};
    std::array<double, K> rhs{};
    for (std::size_t round = 0; round < rounds; ++round) {
        normal.fill(0.0);
        rhs.fill(0.0);
        for (std::size_t j = 0; j < size; ++j) {
            for (std::size_t k = 0; k < K; ++k) {
                const double sk = (codes[j] >> k) & 1 ? 1.0 : -1.0;
                rhs[k] += d[j] * sk * w[j];
                for (std::size_t l = 0; l < K; ++l) normal[k * K + l] += d[j] * sk * ((codes[j] >> l) & 1 ? 1.0 : -1.0);
            }
        }
        solve_positive_semidefinite(normal, rhs);
        alphas = rhs;
        bool changed = false;
        for (std::size_t j = 0; j < size; ++j) {
            const std::size_t code = nearest_code<K>(alphas, w[j]);
            changed = changed || code != codes[j];
            codes[j] = code;
        }
        if (!changed) break;
    }
    return alphas;
}

}  // namespace detail

// Rows are independent. Throws on non-finite weights, a second moment of the wrong size or one
// holding non-finite values, and scales beyond the range of the matrix's scale type.
template <class Matrix>
Matrix error_feedback_init(MatrixView<const float> weights, const SecondMoment& h, std::size_t rounds = 10,
                           double damping = 0.01) {
    constexpr std::size_t K = Matrix::kernels;
    using Scale = typename Matrix::scale_type;
    check_second_moment("error_feedback_init", h, weights.cols());
    const std::size_t n = weights.cols();
    const std::string shape = std::to_string(weights.rows()) + "x" + std::to_string(n);
    const detail::DampedInverseFactor factor =
        detail::damped_inverse_factor(h.dense(), n, damping, "error_feedback_init", shape);
    const std::vector<double>& upper = factor.upper;
    Matrix m(weights.rows(), n);
    std::vector<double> w(n), d(n);
    // An input that never varies does not reach the output: its weight does not steer the scales.
    for (std::size_t j = 0; j < n; ++j) d[j] = factor.dead[j] ? 0.0 : 1.0 / (upper[j * n + j] * upper[j * n + j]);
    std::vector<std::size_t> codes;
    for (std::size_t i = 0; i < weights.rows(); ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const float v = weights(i, j);
            if (!std::isfinite(v)) {
                throw std::invalid_argument("error_feedback_init: weight at row " + std::to_string(i) + " col " +
                                            std::to_string(j) + " of a " + shape + " matrix is " + std::to_string(v) +
                                            ", not a finite number");
            }
            w[j] = v;
        }
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            const std::size_t begin = m.group_begin(g), end = m.group_end(g);
            std::array<double, K> alphas =
                detail::fit_group_scales<K>(std::span<const double>(w).subspan(begin, end - begin),
                                            std::span<const double>(d).subspan(begin, end - begin), rounds, codes);
            for (std::size_t k = 0; k < K; ++k) {
                const auto stored = static_cast<Scale>(alphas[k]);
                if (!is_finite(stored)) {
                    throw std::invalid_argument("error_feedback_init: kernel " + std::to_string(k) + " row " +
                                                std::to_string(i) + " group " + std::to_string(g) +
                                                " needs a scale of " + std::to_string(alphas[k]) +
                                                ", beyond the range of the scale type");
                }
                m.set_scale(k, i, g, stored);
                alphas[k] = static_cast<double>(stored);  // levels as stored, so the feedback sees their rounding
            }
            for (std::size_t j = begin; j < end; ++j) {
                const std::size_t code = detail::nearest_code<K>(alphas, w[j]);
                for (std::size_t k = 0; k < K; ++k) m.set_sign(k, i, j, (code >> k) & 1 ? 1 : -1);
                const double error = (w[j] - detail::code_level<K>(alphas, code)) / upper[j * n + j];
                for (std::size_t c = j + 1; c < n; ++c) w[c] -= error * upper[j * n + c];
            }
        }
    }
    return m;
}

}  // namespace multibool
