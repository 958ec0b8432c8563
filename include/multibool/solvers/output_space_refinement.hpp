#pragma once
// Bits and scales under the full output-space objective (w - w_hat)^T H (w - w_hat) of each row.
// Nearest-level assignment is exact only when H is diagonal; with real calibration data the
// off-diagonal terms are where most of the error hides (correlated inputs let one weight's error
// cancel another's). Here each weight's K bits move by exact coordinate descent: the level that
// lowers the row objective most, given all other weights, keeping H (w - w_hat) up to date in
// O(n) per change. Alternated with the closed-form output-space scales, the objective never
// increases.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/alternating_refinement.hpp"
#include "multibool/solvers/output_space_solver.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

namespace detail {

// The bit step on a dense row-major H of m.cols()^2 entries, checked by the callers.
template <BitPlaneStorage M>
std::size_t assign_bits_output_space(M& m, MatrixView<const float> target, std::span<const double> dense,
                                     std::size_t sweeps) {
    constexpr std::size_t K = M::kernels;
    constexpr std::size_t patterns = std::size_t{1} << K;
    const std::size_t n = m.cols();
    std::vector<double> error(n);          // e = w - w_hat of the row
    std::vector<double> weighted(n);       // H e
    std::vector<double> levels(patterns);  // level of each sign pattern in the current group
    std::vector<std::uint8_t> pattern(n);  // the pattern each weight holds
    std::size_t changed = 0;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            std::uint8_t p = 0;
            for (std::size_t k = 0; k < K; ++k) p |= std::uint8_t((m.sign(k, i, j) > 0 ? 1u : 0u) << k);
            pattern[j] = p;
            error[j] = double(target(i, j)) - double(m.weight(i, j));
        }
        for (std::size_t a = 0; a < n; ++a) {
            double sum = 0.0;
            for (std::size_t b = 0; b < n; ++b) sum += dense[a * n + b] * error[b];
            weighted[a] = sum;
        }
        for (std::size_t sweep = 0; sweep < sweeps; ++sweep) {
            std::size_t changed_this_sweep = 0;
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                for (std::size_t p = 0; p < patterns; ++p) {
                    double level = 0.0;
                    for (std::size_t k = 0; k < K; ++k) {
                        level += static_cast<double>(m.scale(k, i, g)) * (((p >> k) & 1u) != 0 ? 1.0 : -1.0);
                    }
                    levels[p] = level;
                }
                for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                    // Moving w_hat_j from its level to L changes e_j by d = current - L and the
                    // objective by 2 d (H e)_j + d^2 H_jj.
                    const double current = levels[pattern[j]];
                    const double hjj = dense[j * n + j];
                    std::size_t best = pattern[j];
                    double best_change = 0.0;
                    for (std::size_t p = 0; p < patterns; ++p) {
                        const double d = current - levels[p];
                        const double change = 2.0 * d * weighted[j] + d * d * hjj;
                        if (change < best_change) {
                            best_change = change;
                            best = p;
                        }
                    }
                    if (best == pattern[j]) continue;
                    const double d = current - levels[best];
                    error[j] += d;
                    for (std::size_t a = 0; a < n; ++a) weighted[a] += d * dense[a * n + j];
                    for (std::size_t k = 0; k < K; ++k) m.set_sign(k, i, j, ((best >> k) & 1u) != 0 ? 1 : -1);
                    pattern[j] = std::uint8_t(best);
                    ++changed_this_sweep;
                }
            }
            changed += changed_this_sweep;
            if (changed_this_sweep == 0) break;
        }
    }
    return changed;
}

}  // namespace detail

// `sweeps` passes over every weight of every row with the scales fixed. Returns the number of
// weights whose bits changed.
template <BitPlaneStorage M>
std::size_t assign_bits_output_space(M& m, MatrixView<const float> target, const SecondMoment& h,
                                     std::size_t sweeps = 2) {
    check_target("assign_bits_output_space", m, target);
    check_second_moment("assign_bits_output_space", h, m.cols());
    return detail::assign_bits_output_space(m, target, h.dense(), sweeps);
}

// Rounds of {closed-form output-space scales; coordinate-descent bits}, with
// alternating_refinement's guarantees: the objective never increases, and it stops at a fixed
// point.
template <BitPlaneStorage M>
std::vector<double> output_space_refinement(M& m, MatrixView<const float> target, const SecondMoment& h,
                                            std::size_t iterations = 4) {
    check_second_moment("output_space_refinement", h, m.cols());
    const OutputSpaceSolver solver(h);  // one dense H for both steps of every round
    return alternating_refinement(m, target, iterations, solver, [&](M& matrix, MatrixView<const float> t) {
        detail::assign_bits_output_space(matrix, t, solver.hessian(), 2);
    });
}

}  // namespace multibool
