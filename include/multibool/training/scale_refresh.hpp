#pragma once
// The closed-form alternative to ScaleAdamW (docs/METHOD.md §4, §5): with the bits just flipped, re-solve
// the scales exactly for an objective the caller gives, either in weight space against a teacher
// matrix or in output space against a teacher's outputs on cached calibration inputs.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/alpha_solver.hpp"

namespace multibool {

// The solver's own objective against a teacher weight matrix (e.g. WeightSpaceSolver for
// ||T - W_hat||^2, OutputSpaceSolver for the H-weighted error); never raises it.
template <BitPlaneStorage M, class Solver>
    requires AlphaSolver<Solver, M> AlphaSolveReport refresh_scales_to_teacher(M& m, MatrixView<const float> teacher,
                                                                               const Solver& solver) {
        return solver.solve(m, teacher);
    }

namespace detail {

inline void check_finite_entries(const char* what, MatrixView<const float> v) {
    for (std::size_t t = 0; t < v.rows(); ++t) {
        for (std::size_t j = 0; j < v.cols(); ++j) {
            if (!std::isfinite(v(t, j))) {
                throw std::invalid_argument(std::string("refresh_scales_to_outputs: ") + what + " at row " +
                                            std::to_string(t) + " col " + std::to_string(j) + " is " +
                                            std::to_string(v(t, j)) + ", not a finite number");
            }
        }
    }
}

}  // namespace detail

// min over each row's K * groups scales of sum_t (y_teacher[t, i] - (W_hat x_t)_i)^2 for cached
// calibration inputs x (T x n) and the teacher's outputs y_teacher (T x m). Unlike
// OutputSpaceSolver it needs no dense teacher weight, so the teacher may be any model whose
// layer outputs were recorded. Row i is linear least squares in features
// s_kg(x_t) = sum_{j in g} b_kij x_tj; its new scales are kept only if, rounded to the scale
// type, they lower the row's objective. For T < K * groups a row is under-determined and
// solve_positive_semidefinite drops the dependent unknowns (they become 0 if that still helps).
// Cost per row: T * (K * n + (K * groups)^2 / 2) multiply-adds for the features and the Gram.
template <BitPlaneStorage M>
AlphaSolveReport refresh_scales_to_outputs(M& m, MatrixView<const float> x, MatrixView<const float> y_teacher) {
    using Scale = typename M::scale_type;
    constexpr std::size_t K = M::kernels;
    if (x.cols() != m.cols() || y_teacher.cols() != m.rows() || x.rows() != y_teacher.rows()) {
        throw std::invalid_argument(
            "refresh_scales_to_outputs: for a " + std::to_string(m.rows()) + "x" + std::to_string(m.cols()) +
            " matrix, x (" + std::to_string(x.rows()) + "x" + std::to_string(x.cols()) + ") must be T x " +
            std::to_string(m.cols()) + " and y_teacher (" + std::to_string(y_teacher.rows()) + "x" +
            std::to_string(y_teacher.cols()) + ") T x " + std::to_string(m.rows()) + " with the same T");
    }
    detail::check_finite_entries("x", x);
    detail::check_finite_entries("y_teacher", y_teacher);

    const std::size_t tokens = x.rows();
    const std::size_t groups = m.groups_per_row();
    const std::size_t unknowns = K * groups;  // unknown g * K + k is alpha_k[i, g], as OutputSpaceSolver
    std::vector<double> signs(m.cols());
    std::vector<double> features(tokens * unknowns);  // row t: s(x_t)
    std::vector<double> normal(unknowns * unknowns);
    std::vector<double> solution(unknowns);
    std::vector<double> current(unknowns);
    AlphaSolveReport report;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t k = 0; k < K; ++k) {
            detail::decode_signs(m, k, i, 0, m.cols(), std::span<double>(signs));
            for (std::size_t t = 0; t < tokens; ++t) {
                const auto xt = x.row(t);
                for (std::size_t g = 0; g < groups; ++g) {
                    double s = 0.0;
                    for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) s = std::fma(signs[j], xt[j], s);
                    features[t * unknowns + g * K + k] = s;
                }
            }
            for (std::size_t g = 0; g < groups; ++g) current[g * K + k] = static_cast<double>(m.scales(k, i)[g]);
        }
        // Gram = S^T S and rhs = S^T y_i, token by token.
        std::fill(normal.begin(), normal.end(), 0.0);
        std::fill(solution.begin(), solution.end(), 0.0);
        for (std::size_t t = 0; t < tokens; ++t) {
            const double* const s = features.data() + t * unknowns;
            const double y = y_teacher(t, i);
            for (std::size_t a = 0; a < unknowns; ++a) {
                solution[a] = std::fma(s[a], y, solution[a]);
                for (std::size_t b = 0; b <= a; ++b)
                    normal[a * unknowns + b] = std::fma(s[a], s[b], normal[a * unknowns + b]);
            }
        }
        for (std::size_t a = 0; a < unknowns; ++a) {
            for (std::size_t b = 0; b < a; ++b) normal[b * unknowns + a] = normal[a * unknowns + b];
        }
        const auto error = [&](std::span<const double> alphas) {
            double sum = 0.0;
            for (std::size_t t = 0; t < tokens; ++t) {
                const double* const s = features.data() + t * unknowns;
                double fitted = 0.0;
                for (std::size_t a = 0; a < unknowns; ++a) fitted = std::fma(s[a], alphas[a], fitted);
                const double d = double(y_teacher(t, i)) - fitted;
                sum = std::fma(d, d, sum);
            }
            return sum;
        };
        const double before = error(current);
        const double after = detail::solve_keeping_better<Scale>(
            normal, solution, before, error,
            [&](std::span<const double> alphas) {
                for (std::size_t g = 0; g < groups; ++g) {
                    for (std::size_t k = 0; k < K; ++k) m.set_scale(k, i, g, static_cast<Scale>(alphas[g * K + k]));
                }
            },
            report);
        report.error_before += before;
        report.error_after += after;
    }
    return report;
}

}  // namespace multibool
