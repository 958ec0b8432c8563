#pragma once
// OutputSpaceSolver: per row, all K * groups scales at once for
// min (w - w_hat)^T H (w - w_hat) = E ||(W - W_hat) x||^2 with H = E[x x^T] (docs/METHOD.md §4): the
// output-space (distillation) objective ||Y_teacher - W_hat X||^2 / T of calibration inputs X,
// Y_teacher = W X. Unlike the per-group objectives it couples every group of a row through H.
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/least_squares.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

class OutputSpaceSolver {
public:
    // Keeps H as a dense matrix, built once: every solve and objective reads all of it.
    explicit OutputSpaceSolver(const SecondMoment& h) : dimension_(h.dimension()), hessian_(h.dense()) {}

    // H, row-major dimension x dimension.
    [[nodiscard]] std::span<const double> hessian() const noexcept { return hessian_; }

    template <BitPlaneStorage M>
    AlphaSolveReport solve(M& m, MatrixView<const float> target) const {
        check_inputs(m, target);
        RowSystem<M> row(m, hessian_);
        return detail::solve_systems(m, target, m.groups_per_row(), row);
    }

    // (w_i - w_hat_i)^T H (w_i - w_hat_i) per row.
    template <BitPlaneStorage M>
    std::vector<double> row_objectives(const M& m, MatrixView<const float> target) const {
        check_inputs(m, target);
        RowSystem<M> row(m, hessian_);
        return detail::system_row_objectives(m, target, m.groups_per_row(), row);
    }

private:
    template <BitPlaneStorage M>
    void check_inputs(const M& m, MatrixView<const float> target) const {
        check_second_moment("OutputSpaceSolver", dimension_, m.cols());
        check_target("OutputSpaceSolver", m, target);
    }

    // One row's system. Unknown g * K + k is alpha_k[i, g]; its design column is b_k on group g
    // and 0 elsewhere. Signs are decoded group by group: group g's K planes start at K * begin(g).
    template <BitPlaneStorage M>
    class RowSystem {
    public:
        RowSystem(const M& m, std::span<const double> h)
            : m_(m), h_(h), n_(m.cols()), signs_(M::kernels * n_), w_(n_), column_(n_), residual_(n_), product_(n_) {}

        // A row is one system, so the system's first group is always 0.
        void load(std::size_t i, std::size_t, std::span<const float> row) noexcept {
            for (std::size_t g = 0; g < m_.groups_per_row(); ++g) {
                detail::decode_kernel_signs(m_, i, m_.group_begin(g), m_.group_end(g), group_signs(g));
            }
            for (std::size_t j = 0; j < n_; ++j) w_[j] = row[j];
        }

        // N = D^T H D (lower triangle computed, mirrored) and r = D^T H w.
        void normal_equations(std::span<double> normal, std::span<double> rhs) {
            constexpr std::size_t K = M::kernels;
            const std::size_t unknowns = K * m_.groups_per_row();
            multiply(w_, 0, n_);
            for (std::size_t g = 0; g < m_.groups_per_row(); ++g) {
                for (std::size_t k = 0; k < K; ++k) rhs[g * K + k] = plane_dot(g, k);
            }
            for (std::size_t h = 0; h < m_.groups_per_row(); ++h) {
                const std::size_t begin = m_.group_begin(h);
                const std::size_t size = m_.group_end(h) - begin;
                for (std::size_t l = 0; l < K; ++l) {
                    // H times column (h, l), needed only from group h on (the lower triangle).
                    for (std::size_t j = 0; j < size; ++j) column_[begin + j] = group_signs(h)[l * size + j];
                    multiply(column_, begin, begin + size);
                    const std::size_t column = h * K + l;
                    for (std::size_t g = h; g < m_.groups_per_row(); ++g) {
                        for (std::size_t k = g == h ? l : 0; k < K; ++k) {
                            normal[(g * K + k) * unknowns + column] = normal[column * unknowns + g * K + k] =
                                plane_dot(g, k);
                        }
                    }
                }
            }
        }

        // (w - w_hat)^T H (w - w_hat) for scales laid out like the unknowns.
        double error(std::span<const double> alphas) {
            constexpr std::size_t K = M::kernels;
            for (std::size_t g = 0; g < m_.groups_per_row(); ++g) {
                const std::size_t begin = m_.group_begin(g);
                const std::size_t size = m_.group_end(g) - begin;
                detail::reconstruct<K>(group_signs(g), alphas.subspan(g * K, K),
                                       std::span<double>(residual_).subspan(begin, size));
            }
            for (std::size_t j = 0; j < n_; ++j) residual_[j] = w_[j] - residual_[j];
            multiply(residual_, 0, n_);
            double sum = 0.0;
            for (std::size_t j = 0; j < n_; ++j) sum = std::fma(residual_[j], product_[j], sum);
            return sum;
        }

    private:
        std::span<double> group_signs(std::size_t g) {
            const std::size_t begin = m_.group_begin(g);
            return std::span<double>(signs_).subspan(M::kernels * begin, M::kernels * (m_.group_end(g) - begin));
        }

        // product[begin..n) = rows [begin, n) of H times v restricted to [begin, end). As a sum of
        // H's rows (H is symmetric), so that the inner loop vectorizes.
        void multiply(const std::vector<double>& v, std::size_t begin, std::size_t end) {
            for (std::size_t j = begin; j < n_; ++j) product_[j] = 0.0;
            for (std::size_t a = begin; a < end; ++a) {
                const double va = v[a];
                const double* const h_row = h_.data() + a * n_;
                for (std::size_t j = begin; j < n_; ++j) product_[j] = std::fma(va, h_row[j], product_[j]);
            }
        }

        // <b_k restricted to group g, product>.
        double plane_dot(std::size_t g, std::size_t k) {
            const std::size_t begin = m_.group_begin(g);
            const std::size_t size = m_.group_end(g) - begin;
            const double* const s = group_signs(g).data() + k * size;
            double sum = 0.0;
            for (std::size_t j = 0; j < size; ++j) sum = std::fma(s[j], product_[begin + j], sum);
            return sum;
        }

        const M& m_;
        std::span<const double> h_;
        std::size_t n_;
        std::vector<double> signs_;
        std::vector<double> w_;
        std::vector<double> column_;  // a design column (b_l on one group)
        std::vector<double> residual_;
        std::vector<double> product_;
    };

    std::size_t dimension_;
    std::vector<double> hessian_;
};

}  // namespace multibool
