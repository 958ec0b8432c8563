#pragma once
// Alternating refinement (docs/METHOD.md §3): repeat { scales in closed form for the bits (an
// AlphaSolver); bits nearest to the target for the scales (assign_nearest_levels) }. Both steps
// are exact for the weight-space and diagonal-H objectives; for objectives that couple columns
// (a group's H block, the full H) the bit step is not, so a row whose objective it raised gets
// its previous bits back. Either way the objective never increases.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/activation_aware_solver.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/error_feedback_init.hpp"
#include "multibool/solvers/greedy_residual.hpp"
#include "multibool/solvers/nearest_level.hpp"
#include "multibool/solvers/output_space_solver.hpp"
#include "multibool/solvers/second_moment.hpp"
#include "multibool/solvers/weight_space_solver.hpp"

namespace multibool {

namespace detail {

// Row i of `from` (bits and scales) into `to`, a matrix of the same shape.
template <BitPlaneStorage M>
void copy_row(const M& from, M& to, std::size_t i) {
    for (std::size_t k = 0; k < M::kernels; ++k) {
        for (std::size_t j = 0; j < from.cols(); ++j)
            to.set_sign(k, i, j, column_is_set(from.plane_row(k, i), j) ? 1 : -1);
        for (std::size_t g = 0; g < from.groups_per_row(); ++g) to.set_scale(k, i, g, from.scales(k, i)[g]);
    }
}

}  // namespace detail

// Runs up to `iterations` rounds of {solver's closed-form scales; assign_bits(m, target)} in
// place and returns the solver's objective at the start and after each half-step,
// non-increasing: a row whose objective the bit step raised gets its previous bits back. A round
// whose bit step changes nothing is a fixed point (the scales are a function of the bits), so it
// stops there: 1 + 2 * rounds run values.
template <BitPlaneStorage M, AlphaSolver<M> S, class AssignBits>
std::vector<double> alternating_refinement(M& m, MatrixView<const float> target, std::size_t iterations,
                                           const S& solver, AssignBits&& assign_bits) {
    std::vector<double> objectives{objective(solver, m, target)};
    for (std::size_t round = 0; round < iterations; ++round) {
        solver.solve(m, target);
        std::vector<double> rows = solver.row_objectives(m, target);
        objectives.push_back(detail::sum_in_order(rows));
        const M previous = m;
        assign_bits(m, target);
        const std::vector<double> after = solver.row_objectives(m, target);
        for (std::size_t i = 0; i < m.rows(); ++i) {
            if (after[i] > rows[i]) {
                detail::copy_row(previous, m, i);
            } else {
                rows[i] = after[i];
            }
        }
        objectives.push_back(detail::sum_in_order(rows));
        if (m == previous) break;
    }
    return objectives;
}

// The bit step of docs/METHOD.md §3: each weight to the nearest of its group's 2^K levels.
template <BitPlaneStorage M, AlphaSolver<M> S>
std::vector<double> alternating_refinement(M& m, MatrixView<const float> target, std::size_t iterations,
                                           const S& solver) {
    return alternating_refinement(m, target, iterations, solver,
                                  [](M& matrix, MatrixView<const float> t) { assign_nearest_levels(matrix, t); });
}

// Greedy residual start, then weight-space alternating refinement.
template <class Matrix>
Matrix alternating_init(MatrixView<const float> weights, std::size_t iterations = 10) {
    Matrix m = greedy_residual<Matrix>(weights);
    alternating_refinement(m, weights, iterations, WeightSpaceSolver{});
    return m;
}

// Which starts activation_aware_init compares.
// error_feedback_init's start costs a dense O(n^3) factorization of H per call (minutes for
// n = 11008), so it is asked for; the LLaMA conversion asks for it.
struct ActivationAwareStarts {
    bool error_feedback = false;  // error_feedback_init's, beside the greedy ones
};

// For a layer whose calibration inputs have second moment h, starts with output-space scales:
// greedy residual; greedy refined under the diagonal-H objective; and, when `starts` asks,
// error_feedback_init. Row by row (the full-H objective is a sum over rows) the best of them.
template <class Matrix>
Matrix activation_aware_init(MatrixView<const float> weights, const SecondMoment& h, std::size_t iterations = 10,
                             ActivationAwareStarts starts = {}) {
    check_second_moment("activation_aware_init", h, weights.cols());
    const OutputSpaceSolver output_space(h);
    Matrix greedy = greedy_residual<Matrix>(weights);
    Matrix refined = greedy;
    alternating_refinement(refined, weights, iterations, ActivationAwareSolver(h, HessianBlock::diagonal));
    output_space.solve(greedy, weights);
    output_space.solve(refined, weights);
    const std::vector<double> greedy_rows = output_space.row_objectives(greedy, weights);
    std::vector<double> refined_rows = output_space.row_objectives(refined, weights);
    for (std::size_t i = 0; i < weights.rows(); ++i) {
        if (greedy_rows[i] < refined_rows[i]) {
            detail::copy_row(greedy, refined, i);
            refined_rows[i] = greedy_rows[i];
        }
    }
    if (!starts.error_feedback) return refined;
    Matrix feedback = error_feedback_init<Matrix>(weights, h, iterations);
    output_space.solve(feedback, weights);
    const std::vector<double> feedback_rows = output_space.row_objectives(feedback, weights);
    for (std::size_t i = 0; i < weights.rows(); ++i) {
        if (feedback_rows[i] < refined_rows[i]) detail::copy_row(feedback, refined, i);
    }
    return refined;
}

}  // namespace multibool
