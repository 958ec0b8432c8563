#pragma once
// ActivationAwareSolver: the exact scales of each (row, group) for
// min (w_g - w_hat_g)^T H_g (w_g - w_hat_g), H = E[x x^T] from calibration inputs (SPEC §4):
// the error weighted by how strongly each input is driven, so that columns fed by large
// activations weigh more. H_g is the diagonal of H on the group or its full G x G block.
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/least_squares.hpp"
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
        using Scale = typename M::scale_type;
        constexpr std::size_t K = M::kernels;
        check_inputs(m, target);
        const std::vector<double> blocks = hessian_blocks(m);
        AlphaSolveReport report;
        Workspace<K> work(block_, m.group_size());
        std::array<double, K * K> normal{};
        std::array<double, K> solution{};
        std::array<double, K> current{};
        for (std::size_t i = 0; i < m.rows(); ++i) {
            double row_before = 0.0;
            double row_after = 0.0;
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                const std::size_t begin = m.group_begin(g);
                work.load(m, i, begin, m.group_end(g), target.row(i), group_hessian(m, blocks, g));
                work.normal_equations(normal, solution);
                for (std::size_t k = 0; k < K; ++k) current[k] = static_cast<double>(m.scales(k, i)[g]);
                const double before = work.error(current);
                const double after = detail::solve_keeping_better<Scale>(
                    normal, solution, before, [&](std::span<const double> alphas) { return work.error(alphas); },
                    [&](std::span<const double> alphas) {
                        for (std::size_t k = 0; k < K; ++k) m.set_scale(k, i, g, static_cast<Scale>(alphas[k]));
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

    // sum_g (w_g - w_hat_g)^T H_g (w_g - w_hat_g) per row.
    template <BitPlaneStorage M>
    std::vector<double> row_objectives(const M& m, MatrixView<const float> target) const {
        constexpr std::size_t K = M::kernels;
        check_inputs(m, target);
        const std::vector<double> blocks = hessian_blocks(m);
        Workspace<K> work(block_, m.group_size());
        std::array<double, K> current{};
        std::vector<double> rows(m.rows(), 0.0);
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                work.load(m, i, m.group_begin(g), m.group_end(g), target.row(i), group_hessian(m, blocks, g));
                for (std::size_t k = 0; k < K; ++k) current[k] = static_cast<double>(m.scales(k, i)[g]);
                rows[i] += work.error(current);
            }
        }
        return rows;
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

    // H_g of group g within hessian_blocks.
    template <BitPlaneStorage M>
    std::span<const double> group_hessian(const M& m, const std::vector<double>& blocks, std::size_t g) const {
        const std::size_t size = m.group_end(g) - m.group_begin(g);
        if (block_ == HessianBlock::diagonal) return std::span<const double>(blocks).subspan(m.group_begin(g), size);
        return std::span<const double>(blocks).subspan(g * m.group_size() * m.group_size(), size * size);
    }

    // One (row, group) system: its decoded signs, target slice and H_g; normal equations and the
    // one error formula both solve and row_objectives use.
    template <std::size_t K>
    struct Workspace {
        Workspace(HessianBlock hessian_block, std::size_t group_size)
            : full_block(hessian_block == HessianBlock::group),
              signs(K * group_size),
              w(group_size),
              residual(group_size),
              product(group_size) {}

        template <BitPlaneStorage M>
        void load(const M& m, std::size_t i, std::size_t begin, std::size_t end, std::span<const float> row,
                  std::span<const double> group_hessian) {
            size = end - begin;
            hessian = group_hessian;
            for (std::size_t k = 0; k < K; ++k) {
                detail::decode_signs(m, k, i, begin, end, std::span<double>(signs).subspan(k * size, size));
            }
            for (std::size_t j = 0; j < size; ++j) w[j] = row[begin + j];
        }

        // N = B^T H_g B and r = B^T H_g w.
        void normal_equations(std::span<double> normal, std::span<double> rhs) {
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
        double error(std::span<const double> alphas) {
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
        void multiply_block(std::span<const double> v) {
            for (std::size_t j = 0; j < size; ++j) product[j] = 0.0;
            for (std::size_t a = 0; a < size; ++a) {
                const double va = v[a];
                const double* const h_row = hessian.data() + a * size;
                for (std::size_t j = 0; j < size; ++j) product[j] = std::fma(va, h_row[j], product[j]);
            }
        }
        double dot(const double* v) const {
            double sum = 0.0;
            for (std::size_t j = 0; j < size; ++j) sum = std::fma(v[j], product[j], sum);
            return sum;
        }

        bool full_block;
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
