#pragma once
// ActivationAwareSolver: the exact scales of each (row, group) for
// min (w_g - w_hat_g)^T H_g (w_g - w_hat_g), H = E[x x^T] from calibration inputs (docs/METHOD.md §4):
// the error weighted by how strongly each input is driven, so that columns fed by large
// activations weigh more. H_g is the diagonal of H on the group or its full G x G block.
#include <cmath>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

// Which part of H the activation-aware objective keeps: the diagonal (inputs weighted
// independently) or the diagonal block of each group (correlations inside a group too).
enum class HessianBlock { diagonal, group };

class ActivationAwareSolver {
public:
    // The second moment is read at every solve, not copied: it must outlive the solver.
    ActivationAwareSolver(const SecondMoment& h, HessianBlock block) noexcept : h_(&h), block_(block) {}

    [[nodiscard]] HessianBlock block() const noexcept { return block_; }

    template <BitPlaneStorage M>
    AlphaSolveReport solve(M& m, MatrixView<const float> target) const {
        check_inputs(m, target);
        GroupSystem<M> system(m, block_, hessian_blocks(m));
        return detail::solve_systems(m, target, 1, system);
    }

    // sum_g (w_g - w_hat_g)^T H_g (w_g - w_hat_g) per row.
    template <BitPlaneStorage M>
    std::vector<double> row_objectives(const M& m, MatrixView<const float> target) const {
        check_inputs(m, target);
        GroupSystem<M> system(m, block_, hessian_blocks(m));
        return detail::system_row_objectives(m, target, 1, system);
    }

private:
    template <BitPlaneStorage M>
    void check_inputs(const M& m, MatrixView<const float> target) const {
        check_second_moment("ActivationAwareSolver", *h_, m.cols());
        check_target("ActivationAwareSolver", m, target);
    }

    // The part of H the objective reads: its diagonal, or each group's block row-major, block g
    // at g * G^2 (every group before the last is full).
    template <BitPlaneStorage M>
    std::vector<double> hessian_blocks(const M& m) const {
        std::vector<double> blocks;
        if (block_ == HessianBlock::diagonal) {
            blocks.resize(m.cols());
            for (std::size_t j = 0; j < m.cols(); ++j) blocks[j] = (*h_)(j, j);
            return blocks;
        }
        blocks.resize(m.groups_per_row() * m.group_size() * m.group_size());
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            const std::size_t begin = m.group_begin(g);
            const std::size_t size = m.group_end(g) - begin;
            double* const block = blocks.data() + g * m.group_size() * m.group_size();
            for (std::size_t a = 0; a < size; ++a) {
                for (std::size_t b = 0; b < size; ++b) block[a * size + b] = (*h_)(begin + a, begin + b);
            }
        }
        return blocks;
    }

    // One (row, group) system: its decoded signs, target slice and H_g; normal equations and the
    // one error formula both solve and row_objectives use.
    template <BitPlaneStorage M>
    struct GroupSystem {
        static constexpr std::size_t K = M::kernels;

        GroupSystem(const M& matrix, HessianBlock hessian_block, std::vector<double> hessian_blocks)
            : m(matrix),
              full_block(hessian_block == HessianBlock::group),
              blocks(std::move(hessian_blocks)),
              signs(K * m.group_size()),
              w(m.group_size()),
              residual(m.group_size()),
              product(m.group_size()) {}

        void load(std::size_t i, std::size_t g, std::span<const float> target_row) noexcept {
            const std::size_t begin = m.group_begin(g);
            size = m.group_end(g) - begin;
            hessian = full_block
                          ? std::span<const double>(blocks).subspan(g * m.group_size() * m.group_size(), size * size)
                          : std::span<const double>(blocks).subspan(begin, size);
            detail::decode_kernel_signs(m, i, begin, begin + size, signs);
            for (std::size_t j = 0; j < size; ++j) w[j] = target_row[begin + j];
        }

        // N = B^T H_g B and r = B^T H_g w.
        void normal_equations(std::span<double> normal, std::span<double> rhs) noexcept {
            if (!full_block) {
                for (std::size_t k = 0; k < K; ++k) {
                    const double* const sk = &signs[k * size];
                    for (std::size_t l = 0; l <= k; ++l) {
                        const double* const sl = &signs[l * size];
                        double n = 0.0;
                        for (std::size_t j = 0; j < size; ++j) n = std::fma(hessian[j] * sk[j], sl[j], n);
                        normal[k * K + l] = normal[l * K + k] = n;
                    }
                    double r = 0.0;
                    for (std::size_t j = 0; j < size; ++j) r = std::fma(hessian[j] * sk[j], w[j], r);
                    rhs[k] = r;
                }
                return;
            }
            for (std::size_t l = 0; l < K; ++l) {
                multiply_block(std::span<const double>(signs).subspan(l * size, size));
                for (std::size_t k = l; k < K; ++k) normal[k * K + l] = normal[l * K + k] = dot(&signs[k * size]);
            }
            multiply_block(std::span<const double>(w).first(size));
            for (std::size_t k = 0; k < K; ++k) rhs[k] = dot(&signs[k * size]);
        }

        // (w - w_hat)^T H_g (w - w_hat) for the given scales.
        double error(std::span<const double> alphas) noexcept {
            const std::span<double> e = std::span<double>(residual).first(size);
            detail::reconstruct<K>(std::span<const double>(signs).first(K * size), alphas, e);
            for (std::size_t j = 0; j < size; ++j) e[j] = w[j] - e[j];
            if (!full_block) {
                double sum = 0.0;
                for (std::size_t j = 0; j < size; ++j) sum = std::fma(hessian[j] * e[j], e[j], sum);
                return sum;
            }
            multiply_block(e);
            return dot(e.data());
        }

        // product = H_g v, as a sum of H_g's rows (H_g is symmetric) so the inner loop vectorizes.
        void multiply_block(std::span<const double> v) noexcept {
            for (std::size_t j = 0; j < size; ++j) product[j] = 0.0;
            for (std::size_t a = 0; a < size; ++a) {
                const double va = v[a];
                const double* const h_row = hessian.data() + a * size;
                for (std::size_t j = 0; j < size; ++j) product[j] = std::fma(va, h_row[j], product[j]);
            }
        }
        double dot(const double* v) const noexcept {
            double sum = 0.0;
            for (std::size_t j = 0; j < size; ++j) sum = std::fma(v[j], product[j], sum);
            return sum;
        }

        const M& m;
        bool full_block;
        std::vector<double> blocks;  // hessian_blocks: H's diagonal, or every group's block
        std::size_t size = 0;
        std::span<const double> hessian;  // H_g: its diagonal, or the block row-major
        std::vector<double> signs;
        std::vector<double> w;
        std::vector<double> residual;
        std::vector<double> product;
    };

    const SecondMoment* h_;
    HessianBlock block_;
};

}  // namespace multibool
