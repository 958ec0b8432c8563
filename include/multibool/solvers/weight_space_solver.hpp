#pragma once
// WeightSpaceSolver: the exact scales of each (row, group) for min ||w_g - sum_k alpha_k b_k||^2,
// from the normal equations (B^T B) alpha = B^T w_g (docs/METHOD.md §4). For +-1 vectors the Gram matrix
// is popcounts: <b_k, b_l> = |g| - 2 popcount(b_k XOR b_l).
#include <bit>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/solvers/alpha_solver.hpp"

namespace multibool {

struct WeightSpaceSolver {
    template <BitPlaneStorage M>
    AlphaSolveReport solve(M& m, MatrixView<const float> target) const {
        check_target("WeightSpaceSolver", m, target);
        GroupSystem<M> system(m);
        return detail::solve_systems(m, target, 1, system);
    }

    // ||w_i - w_hat_i||^2 per row.
    template <BitPlaneStorage M>
    std::vector<double> row_objectives(const M& m, MatrixView<const float> target) const {
        check_target("WeightSpaceSolver", m, target);
        GroupSystem<M> system(m);
        return detail::system_row_objectives(m, target, 1, system);
    }

private:
    // One (row, group) system: its decoded signs and target row, the normal equations, and the one
    // error formula both solve and row_objectives use, so that the scales solve keeps are judged
    // exactly as the objective is reported.
    template <BitPlaneStorage M>
    struct GroupSystem {
        static constexpr std::size_t K = M::kernels;
        using Word = typename M::word_type;

        explicit GroupSystem(const M& matrix) : m(matrix), signs(K * m.group_size()), w_hat(m.group_size()) {}

        void load(std::size_t row_index, std::size_t g, std::span<const float> target_row) noexcept {
            i = row_index;
            begin = m.group_begin(g);
            end = m.group_end(g);
            w = target_row;
            detail::decode_kernel_signs(m, i, begin, end, signs);
        }

        // The Gram matrix from popcounts, and B^T w by sign selection: <b_k, w> = 2 (sum of w where
        // b_k = +1) - sum of w.
        void normal_equations(std::span<double> gram, std::span<double> rhs) const noexcept {
            for (std::size_t k = 0; k < K; ++k) {
                const auto plane_k = m.plane_row(k, i);
                for (std::size_t l = 0; l <= k; ++l) {
                    const auto plane_l = m.plane_row(l, i);
                    std::size_t differing = 0;
                    for_each_word<Word>(begin, end, [&](std::size_t word, Word mask) {
                        differing += std::popcount(Word((plane_k[word] ^ plane_l[word]) & mask));
                    });
                    gram[k * K + l] = gram[l * K + k] = double(end - begin) - 2.0 * double(differing);
                }
            }
            double sum = 0.0;
            for (std::size_t j = begin; j < end; ++j) sum += w[j];
            for (std::size_t k = 0; k < K; ++k) {
                const auto plane = m.plane_row(k, i);
                double selected = 0.0;
                for_each_word<Word>(begin, end, [&](std::size_t word, Word mask) {
                    for (Word bits = Word(plane[word] & mask); bits != 0; bits = Word(bits & (bits - 1))) {
                        selected += w[word * M::word_bits + std::size_t(std::countr_zero(bits))];
                    }
                });
                rhs[k] = 2.0 * selected - sum;
            }
        }

        // ||w - sum_k alpha_k b_k||^2 over the loaded group.
        double error(std::span<const double> alphas) noexcept {
            const std::size_t size = end - begin;
            const std::span<double> fitted = std::span<double>(w_hat).first(size);
            detail::reconstruct<K>(std::span<const double>(signs).first(K * size), alphas, fitted);
            double sum = 0.0;
            for (std::size_t j = 0; j < size; ++j) {
                const double d = double(w[begin + j]) - fitted[j];
                sum = std::fma(d, d, sum);
            }
            return sum;
        }

        const M& m;
        std::size_t i = 0;
        std::size_t begin = 0;
        std::size_t end = 0;
        std::span<const float> w;  // the target's row i
        std::vector<double> signs;
        std::vector<double> w_hat;
    };
};

}  // namespace multibool
