#pragma once
// The AlphaSolver concept (docs/METHOD.md §4): with the planes fixed, W_hat is linear in the scales, so a
// solver sets them in closed form to minimise its objective against a target, one small system
// at a time (a (row, group) or a whole row). Every objective is a sum over rows, which lets
// alternating refinement keep or revert a bit step row by row.
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/solvers/least_squares.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

struct AlphaSolveReport {
    double error_before = 0.0;  // the objective summed over the matrix, with the scales it came with
    double error_after = 0.0;   // with the scales it leaves: never above error_before
    // Systems that were singular or ill-conditioned (an unknown dropped), or whose solution does
    // not fit the scale type; they keep the best scales that could be formed.
    std::size_t fallbacks = 0;
};

// solve(m, target) rewrites m's scales; row_objectives(m, target)[i] is the objective of row i
// under m's current scales. A system's new scales are kept only when they do not make it worse,
// so solve never raises the objective, whatever m started from.
template <class S, class M>
concept AlphaSolver = BitPlaneStorage<M> &&
    requires(const S& solver, M& m, const M& fixed, MatrixView<const float> target) {
    { solver.solve(m, target) } -> std::same_as<AlphaSolveReport>;
    { solver.row_objectives(fixed, target) } -> std::same_as<std::vector<double>>;
};

// The target must have m's shape and finite entries; errors name the caller.
template <BitPlaneStorage M>
void check_target(const char* who, const M& m, MatrixView<const float> target) {
    if (target.rows() != m.rows() || target.cols() != m.cols()) {
        throw std::invalid_argument(std::string(who) + ": target is " + std::to_string(target.rows()) + "x" +
                                    std::to_string(target.cols()) + ", the matrix is " + std::to_string(m.rows()) +
                                    "x" + std::to_string(m.cols()));
    }
    for (std::size_t i = 0; i < target.rows(); ++i) {
        for (std::size_t j = 0; j < target.cols(); ++j) {
            if (!std::isfinite(target(i, j))) {
                throw std::invalid_argument(std::string(who) + ": target at row " + std::to_string(i) + " col " +
                                            std::to_string(j) + " is " + std::to_string(target(i, j)) +
                                            ", not a finite number");
            }
        }
    }
}

// H must act on the matrix's inputs: its dimension is the number of columns.
inline void check_second_moment(const char* who, std::size_t dimension, std::size_t cols) {
    if (dimension != cols) {
        throw std::invalid_argument(std::string(who) + ": the second moment is " + std::to_string(dimension) + "x" +
                                    std::to_string(dimension) + " but the matrix has " + std::to_string(cols) +
                                    " columns");
    }
}
inline void check_second_moment(const char* who, const SecondMoment& h, std::size_t cols) {
    check_second_moment(who, h.dimension(), cols);
}

namespace detail {

// Plane k of row i over columns [begin, end) as +1.0 / -1.0.
template <BitPlaneStorage M>
void decode_signs(const M& m, std::size_t k, std::size_t i, std::size_t begin, std::size_t end,
                  std::span<double> signs) {
    multibool::decode_signs(m.plane_row(k, i), begin, end, signs);
}

// All K planes of row i over columns [begin, end): kernel k's signs start at k * (end - begin).
// Any matrix with plane_row(k, i), the row x column layout too.
template <class M>
void decode_kernel_signs(const M& m, std::size_t i, std::size_t begin, std::size_t end,
                         std::span<double> signs) noexcept {
    const std::size_t size = end - begin;
    for (std::size_t k = 0; k < M::kernels; ++k) {
        multibool::decode_signs(m.plane_row(k, i), begin, end, signs.subspan(k * size, size));
    }
}

// w_hat_j = sum_k alpha_k b_kj from decoded signs (K rows of `size`), added in kernel order from
// 0 so that it equals, bit for bit, the levels nearest-level assignment compares.
template <std::size_t K>
void reconstruct(std::span<const double> signs, std::span<const double> alphas, std::span<double> w_hat) {
    const std::size_t size = w_hat.size();
    for (std::size_t j = 0; j < size; ++j) w_hat[j] = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t j = 0; j < size; ++j) w_hat[j] += signs[k * size + j] > 0.0 ? alphas[k] : -alphas[k];
    }
}

// Rows summed first to last, as solve sums its report, so that equal rows give equal totals.
inline double sum_in_order(const std::vector<double>& rows) {
    double total = 0.0;
    for (const double row : rows) total += row;
    return total;
}

// Rounds solved scales to the matrix's scale type and back, so that a candidate is judged by
// the values that will actually be stored; false when one does not survive (overflow).
template <class Scale>
bool round_to_scale_type(std::span<double> alphas) {
    for (double& a : alphas) {
        a = static_cast<double>(static_cast<Scale>(a));
        if (!std::isfinite(a)) return false;
    }
    return true;
}

// The step every solver ends a system with: solve the normal equations, round the solution to
// the scale type, and store it only if it lowers the objective `before`. Counts a fallback for a
// dropped unknown or an unrepresentable solution; returns the objective the system is left with.
template <class Scale, class Error, class Store>
double solve_keeping_better(std::span<double> normal, std::span<double> solution, double before, Error&& error,
                            Store&& store, AlphaSolveReport& report) {
    const bool dropped = solve_positive_semidefinite(normal, solution) != 0;
    const bool representable = round_to_scale_type<Scale>(solution);
    if (dropped || !representable) ++report.fallbacks;
    if (!representable) return before;
    const double after = error(solution);
    if (!(after < before)) return before;
    store(solution);
    return after;
}

// The scales of the system of row i that starts at group `first`, laid out as its unknowns:
// alphas[(g - first) * K + k] = alpha_k[i, g].
template <BitPlaneStorage M>
void read_system_scales(const M& m, std::size_t i, std::size_t first, std::span<double> alphas) noexcept {
    for (std::size_t u = 0; u < alphas.size(); ++u) {
        alphas[u] = static_cast<double>(m.scales(u % M::kernels, i)[first + u / M::kernels]);
    }
}

// The loops every solver runs. Each row's scales are solved as systems of `groups_per_system`
// consecutive groups (one group, or the whole row), unknowns laid out as read_system_scales does.
// The solver's `system` provides load(i, first, target_row) (the system of row i from group
// `first`), normal_equations(normal, rhs) and error(alphas), its objective for given scales.
// Errors are summed within a row first, so the report's totals add up the rows as objective() does.
template <BitPlaneStorage M, class System>
AlphaSolveReport solve_systems(M& m, MatrixView<const float> target, std::size_t groups_per_system, System& system) {
    using Scale = typename M::scale_type;
    const std::size_t unknowns = M::kernels * groups_per_system;
    std::vector<double> normal(unknowns * unknowns);
    std::vector<double> solution(unknowns);
    std::vector<double> current(unknowns);
    AlphaSolveReport report;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        double row_before = 0.0;
        double row_after = 0.0;
        for (std::size_t first = 0; first < m.groups_per_row(); first += groups_per_system) {
            system.load(i, first, target.row(i));
            system.normal_equations(normal, solution);
            read_system_scales(m, i, first, current);
            const double before = system.error(current);
            const double after = solve_keeping_better<Scale>(
                normal, solution, before, [&](std::span<const double> alphas) { return system.error(alphas); },
                [&](std::span<const double> alphas) {
                    for (std::size_t u = 0; u < unknowns; ++u) {
                        m.set_scale(u % M::kernels, i, first + u / M::kernels, static_cast<Scale>(alphas[u]));
                    }
                },
                report);
            row_before += before;
            row_after += after;
        }
        report.error_before += row_before;
        report.error_after += row_after;
    }
    return report;
}

// Each row's objective under m's current scales: the errors of its systems, as solve_systems sums them.
template <BitPlaneStorage M, class System>
std::vector<double> system_row_objectives(const M& m, MatrixView<const float> target, std::size_t groups_per_system,
                                          System& system) {
    std::vector<double> current(M::kernels * groups_per_system);
    std::vector<double> rows(m.rows(), 0.0);
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t first = 0; first < m.groups_per_row(); first += groups_per_system) {
            system.load(i, first, target.row(i));
            read_system_scales(m, i, first, current);
            rows[i] += system.error(current);
        }
    }
    return rows;
}

}  // namespace detail

// The solver's objective summed over the matrix.
template <class M, AlphaSolver<M> S>
double objective(const S& solver, const M& m, MatrixView<const float> target) {
    return detail::sum_in_order(solver.row_objectives(m, target));
}

}  // namespace multibool
