#pragma once
// Closed-form alternating refinement of a RowColumnMatrix under the weight-space objective
// ||W - W_hat||_F^2 (docs/METHOD.md §3, §4 for the row x column layout). With the bits fixed, W_hat is
// linear in the row scales of one row (or the column scales of one column), so each is an
// exact K x K least-squares problem; with the scales fixed, each element independently takes
// the nearest of its 2^K levels. Every step is exact coordinate descent. Singular systems (a
// zero scale vector, two kernels with identical scaled signs) go through least_squares.hpp's
// Cholesky with dropped unknowns, which still gives a minimiser and never NaN.
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "multibool/core/matrix_view.hpp"
#include "multibool/core/row_column_matrix.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/least_squares.hpp"

namespace multibool {

namespace detail {

// The matrix's scales as doubles: row[k * rows + i] = s_out,k[i], column[k * cols + j] = s_in,k[j].
template <class Matrix>
struct ScalesAsDouble {
    explicit ScalesAsDouble(const Matrix& m) : rows(m.rows()), cols(m.cols()) {
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            for (auto s : m.row_scales(k)) row.push_back(static_cast<double>(s));
            for (auto s : m.column_scales(k)) column.push_back(static_cast<double>(s));
        }
    }
    // A_k[i, j]: the one expression every step and the objective use, so they round alike.
    [[nodiscard]] double product(std::size_t k, std::size_t i, std::size_t j) const {
        return row[k * rows + i] * column[k * cols + j];
    }
    std::size_t rows;
    std::size_t cols;
    std::vector<double> row;
    std::vector<double> column;
};

// Calls row(i, signs) for every row of m with its K sign rows as doubles: signs[k * cols + j] = b_kij.
template <class Matrix, class Row>
void for_each_decoded_row(const Matrix& m, Row&& row) {
    std::vector<double> signs(Matrix::kernels * m.cols());
    for (std::size_t i = 0; i < m.rows(); ++i) {
        decode_kernel_signs(m, i, 0, m.cols(), signs);
        row(i, std::span<const double>(signs));
    }
}

template <class Matrix>
double weight_space_objective(const Matrix& m, MatrixView<const float> w) {
    const ScalesAsDouble<Matrix> a(m);
    double objective = 0.0;
    for_each_decoded_row(m, [&](std::size_t i, std::span<const double> signs) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            double w_hat = 0.0;
            for (std::size_t k = 0; k < Matrix::kernels; ++k) w_hat += a.product(k, i, j) * signs[k * m.cols() + j];
            const double e = double(w(i, j)) - w_hat;
            objective += e * e;
        }
    });
    return objective;
}

// One term of a K x K least-squares problem in the scales: gram += z z^T, rhs += w z.
template <std::size_t K>
void add_term(double w, const std::array<double, K>& z, std::array<double, K * K>& gram,
              std::array<double, K>& rhs) noexcept {
    for (std::size_t k = 0; k < K; ++k) {
        rhs[k] += w * z[k];
        for (std::size_t l = 0; l < K; ++l) gram[k * K + l] += z[k] * z[l];
    }
}

// Per row i: min over s_out,.[i] of sum_j (w_ij - sum_k s_out,k[i] z_kj)^2 with z_kj = s_in,k[j] b_kij.
template <class Matrix>
void solve_row_scales(Matrix& m, MatrixView<const float> w) {
    constexpr std::size_t K = Matrix::kernels;
    using Scale = typename Matrix::scale_type;
    const ScalesAsDouble<Matrix> a(m);
    for_each_decoded_row(m, [&](std::size_t i, std::span<const double> signs) {
        std::array<double, K * K> gram{};
        std::array<double, K> rhs{};
        std::array<double, K> z{};
        for (std::size_t j = 0; j < m.cols(); ++j) {
            for (std::size_t k = 0; k < K; ++k) z[k] = a.column[k * m.cols() + j] * signs[k * m.cols() + j];
            add_term<K>(double(w(i, j)), z, gram, rhs);
        }
        solve_positive_semidefinite(gram, rhs);  // rhs becomes the solution
        for (std::size_t k = 0; k < K; ++k) m.set_row_scale(k, i, static_cast<Scale>(rhs[k]));
    });
}

// Per column j, symmetrically, with z_ki = s_out,k[i] b_kij; the Gram matrices of all columns
// are accumulated in one pass over the rows, the order the planes are stored in.
template <class Matrix>
void solve_column_scales(Matrix& m, MatrixView<const float> w) {
    constexpr std::size_t K = Matrix::kernels;
    using Scale = typename Matrix::scale_type;
    const ScalesAsDouble<Matrix> a(m);
    std::vector<std::array<double, K * K>> gram(m.cols());
    std::vector<std::array<double, K>> rhs(m.cols());
    for_each_decoded_row(m, [&](std::size_t i, std::span<const double> signs) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            std::array<double, K> z{};
            for (std::size_t k = 0; k < K; ++k) z[k] = a.row[k * m.rows() + i] * signs[k * m.cols() + j];
            add_term<K>(double(w(i, j)), z, gram[j], rhs[j]);
        }
    });
    for (std::size_t j = 0; j < m.cols(); ++j) {
        solve_positive_semidefinite(gram[j], rhs[j]);
        for (std::size_t k = 0; k < K; ++k) m.set_column_scale(k, j, static_cast<Scale>(rhs[j][k]));
    }
}

// Each element takes the sign vector whose level sum_k A_k[i, j] b_k is nearest to w_ij; the
// current bits win ties, so an element only changes when that strictly helps.
template <class Matrix>
void assign_nearest_bits(Matrix& m, MatrixView<const float> w) {
    constexpr std::size_t K = Matrix::kernels;
    const ScalesAsDouble<Matrix> a(m);
    for_each_decoded_row(m, [&](std::size_t i, std::span<const double> signs) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            auto error_of = [&](auto sign_of_kernel) {
                double level = 0.0;
                for (std::size_t k = 0; k < K; ++k) level += a.product(k, i, j) * sign_of_kernel(k);
                const double e = double(w(i, j)) - level;
                return e * e;
            };
            double best = error_of([&](std::size_t k) { return signs[k * m.cols() + j]; });
            std::size_t best_pattern = std::size_t{1} << K;  // none better than the current bits yet
            for (std::size_t pattern = 0; pattern < (std::size_t{1} << K); ++pattern) {
                const double e = error_of([&](std::size_t k) { return (pattern >> k) & 1 ? 1.0 : -1.0; });
                if (e < best) {
                    best = e;
                    best_pattern = pattern;
                }
            }
            if (best_pattern == std::size_t{1} << K) continue;
            for (std::size_t k = 0; k < K; ++k) m.set_sign(k, i, j, (best_pattern >> k) & 1 ? 1 : -1);
        }
    });
}

}  // namespace detail

// Runs `iterations` rounds of {all row scales, all column scales, all bits} on m against the
// dense out x in weights w. Returns ||W - W_hat||_F^2 before the first step and after each step
// (1 + 3 * iterations values), never increasing: a step whose result rounded (scales are
// stored as Scale) to a larger objective is undone.
template <std::size_t K, class Scale, class Word>
std::vector<double> refine_row_column(RowColumnMatrix<K, Scale, Word>& m, MatrixView<const float> w,
                                      std::size_t iterations) {
    using Matrix = RowColumnMatrix<K, Scale, Word>;
    if (w.rows() != m.rows() || w.cols() != m.cols()) {
        throw std::invalid_argument("refine_row_column: weights are " + std::to_string(w.rows()) + "x" +
                                    std::to_string(w.cols()) + ", the matrix is " + std::to_string(m.rows()) + "x" +
                                    std::to_string(m.cols()));
    }
    for (std::size_t e = 0; e < w.data().size(); ++e) {
        if (!std::isfinite(w.data()[e])) {
            throw std::invalid_argument("refine_row_column: weight at row " + std::to_string(e / w.cols()) + " col " +
                                        std::to_string(e % w.cols()) + " is " + std::to_string(w.data()[e]) +
                                        ", not a finite number");
        }
    }
    std::vector<double> objective{detail::weight_space_objective(m, w)};
    auto run = [&](void (*step)(Matrix&, MatrixView<const float>)) {
        Matrix before = m;
        step(m, w);
        const double after = detail::weight_space_objective(m, w);
        if (after > objective.back()) {
            m = std::move(before);
            objective.push_back(objective.back());
        } else {
            objective.push_back(after);
        }
    };
    for (std::size_t iteration = 0; iteration < iterations; ++iteration) {
        run(&detail::solve_row_scales<Matrix>);
        run(&detail::solve_column_scales<Matrix>);
        run(&detail::assign_nearest_bits<Matrix>);
    }
    return objective;
}

}  // namespace multibool
