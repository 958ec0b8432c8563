#pragma once
// SVID initializers (docs/METHOD.md §3, after OneBit): R <- W; for each kernel k, B_k = sign(R) with
// sign(0) = +1, the magnitudes come from the best rank-1 approximation s_out s_in^T of |R|, and
// R <- R - A_k (.) B_k with the scales as stored.
//   svid_residual<RowColumnMatrix<K>>(W): A_k = s_out s_in^T exactly (the MBOK layout).
//   svid_group_init<BitPlaneMatrix<K, G>>(W): A_k averaged into group scales,
//     alpha_k[i, g] = s_out[i] * mean_{j in g} s_in[j]; a closed-form scale solver can refine it.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/row_column_matrix.hpp"

namespace multibool {

namespace detail {

// W as doubles (the residual's starting value), refusing weights that are not finite.
inline std::vector<double> finite_weights(const char* who, MatrixView<const float> weights) {
    std::vector<double> r(weights.data().begin(), weights.data().end());
    for (std::size_t e = 0; e < r.size(); ++e) {
        if (!std::isfinite(r[e])) {
            throw std::invalid_argument(std::string(who) + ": weight at row " + std::to_string(e / weights.cols()) +
                                        " col " + std::to_string(e % weights.cols()) + " of a " +
                                        std::to_string(weights.rows()) + "x" + std::to_string(weights.cols()) +
                                        " matrix is " + std::to_string(r[e]) + ", not a finite number");
        }
    }
    return r;
}

// The best rank-1 approximation sigma u v^T of |R| (Eckart-Young: the top singular pair), split
// evenly as left = sqrt(sigma) u, right = sqrt(sigma) v so neither vector dwarfs the other in a
// narrow scale type. |R| is nonnegative, so its top singular vectors are too (Perron-Frobenius)
// and the all-ones start is never orthogonal to them: power iteration from it is deterministic
// and converges, at the rate (sigma_2 / sigma_1)^2 per step.
struct RankOne {
    std::vector<double> left;   // rows values
    std::vector<double> right;  // cols values
};

inline RankOne rank_one_of_magnitudes(std::span<const double> r, std::size_t rows, std::size_t cols) {
    constexpr int max_iterations = 1000;
    constexpr double tolerance = 1e-12;  // on the largest change of the unit vector v
    // u = |R| v; returns ||u||.
    auto times_magnitudes = [&](const std::vector<double>& v, std::vector<double>& u) {
        double norm = 0.0;
        for (std::size_t i = 0; i < rows; ++i) {
            double s = 0.0;
            for (std::size_t j = 0; j < cols; ++j) s += std::fabs(r[i * cols + j]) * v[j];
            u[i] = s;
            norm += s * s;
        }
        return std::sqrt(norm);
    };
    RankOne result{std::vector<double>(rows, 0.0), std::vector<double>(cols, 0.0)};
    std::vector<double> u(rows);
    std::vector<double> v(cols, 1.0 / std::sqrt(double(cols)));
    std::vector<double> next(cols);
    // A positive v meets a nonzero column of |R| unless |R| = 0, whose magnitudes are all 0.
    double u_norm = times_magnitudes(v, u);
    if (u_norm == 0.0) return result;
    for (int iteration = 0; iteration < max_iterations; ++iteration) {
        for (auto& x : u) x /= u_norm;
        std::fill(next.begin(), next.end(), 0.0);
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) next[j] += std::fabs(r[i * cols + j]) * u[i];
        }
        double next_norm = 0.0;
        for (double x : next) next_norm += x * x;
        next_norm = std::sqrt(next_norm);
        double change = 0.0;
        for (std::size_t j = 0; j < cols; ++j) {
            next[j] /= next_norm;
            change = std::max(change, std::fabs(next[j] - v[j]));
        }
        v.swap(next);
        u_norm = times_magnitudes(v, u);
        if (change <= tolerance) break;
    }
    // Now u = A v for the final unit v, and sigma = ||A v|| = u^T A v / ||u||.
    const double sigma = u_norm;
    const double root = std::sqrt(sigma);
    for (std::size_t i = 0; i < rows; ++i) result.left[i] = u[i] / sigma * root;
    for (std::size_t j = 0; j < cols; ++j) result.right[j] = v[j] * root;
    return result;
}

// The residual scheme shared by both layouts. store_scales(m, k, rank_one) sets kernel k's
// scales; stored_scale(m, k, i, j) reads back A_k[i, j] as stored, so R tracks what the matrix holds.
template <class Matrix, class StoreScales, class StoredScale>
Matrix svid(const char* who, MatrixView<const float> weights, StoreScales store_scales, StoredScale stored_scale) {
    const std::size_t rows = weights.rows();
    const std::size_t cols = weights.cols();
    auto residual = finite_weights(who, weights);
    Matrix m(rows, cols);
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        store_scales(m, k, rank_one_of_magnitudes(residual, rows, cols));
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                double& r = residual[i * cols + j];
                const int s = r >= 0.0 ? 1 : -1;
                m.set_sign(k, i, j, s);
                r -= stored_scale(m, k, i, j) * s;
            }
        }
    }
    return m;
}

}  // namespace detail

template <class Matrix>
Matrix svid_residual(MatrixView<const float> weights) {
    static_assert(is_row_column_matrix<Matrix>,
                  "svid_residual: Matrix must be a RowColumnMatrix; svid_group_init initializes group scales");
    using Scale = typename Matrix::scale_type;
    return detail::svid<Matrix>(
        "svid_residual", weights,
        [](Matrix& m, std::size_t k, const detail::RankOne& magnitudes) {
            for (std::size_t i = 0; i < m.rows(); ++i) m.set_row_scale(k, i, static_cast<Scale>(magnitudes.left[i]));
            for (std::size_t j = 0; j < m.cols(); ++j) {
                m.set_column_scale(k, j, static_cast<Scale>(magnitudes.right[j]));
            }
        },
        [](const Matrix& m, std::size_t k, std::size_t i, std::size_t j) {
            return static_cast<double>(m.row_scale(k, i)) * static_cast<double>(m.column_scale(k, j));
        });
}

template <BitPlaneStorage Matrix>
Matrix svid_group_init(MatrixView<const float> weights) {
    using Scale = typename Matrix::scale_type;
    return detail::svid<Matrix>(
        "svid_group_init", weights,
        [](Matrix& m, std::size_t k, const detail::RankOne& magnitudes) {
            std::vector<double> group_means(m.groups_per_row());
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) group_means[g] += magnitudes.right[j];
                group_means[g] /= double(m.group_end(g) - m.group_begin(g));
            }
            for (std::size_t i = 0; i < m.rows(); ++i) {
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    m.set_scale(k, i, g, static_cast<Scale>(magnitudes.left[i] * group_means[g]));
                }
            }
        },
        [](const Matrix& m, std::size_t k, std::size_t i, std::size_t j) {
            return static_cast<double>(m.scale(k, i, j / m.group_size()));
        });
}

}  // namespace multibool
