#pragma once
// WeightSpaceSolver: the exact scales of each (row, group) for min ||w_g - sum_k alpha_k b_k||^2,
// from the normal equations (B^T B) alpha = B^T w_g (SPEC §4). For +-1 vectors the Gram matrix
// is popcounts: <b_k, b_l> = |g| - 2 popcount(b_k XOR b_l).
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/backends/packed_columns.hpp"
#include "multibool/solvers/alpha_solver.hpp"
#include "multibool/solvers/least_squares.hpp"

namespace multibool {

struct WeightSpaceSolver {
    template <BitPlaneStorage M>
    AlphaSolveReport solve(M& m, MatrixView<const float> target) const {
        using Word = typename M::word_type;
        using Scale = typename M::scale_type;
        constexpr std::size_t K = M::kernels;
        check_target("WeightSpaceSolver", m, target);
        AlphaSolveReport report;
        Workspace<K> work(m.group_size());
        std::array<double, K * K> gram{};
        std::array<double, K> solution{};
        for (std::size_t i = 0; i < m.rows(); ++i) {
            const auto w = target.row(i);
            double row_before = 0.0;
            double row_after = 0.0;
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                const std::size_t begin = m.group_begin(g);
                const std::size_t end = m.group_end(g);
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
                // B^T w by sign selection: <b_k, w> = 2 (sum of w where b_k = +1) - sum of w.
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
                    solution[k] = 2.0 * selected - sum;
                }
                work.load(m, i, begin, end);
                const double before = work.error(w.subspan(begin, end - begin), current_scales(m, i, g));
                const double after = detail::solve_keeping_better<Scale>(
                    gram, solution, before,
                    [&](std::span<const double> alphas) { return work.error(w.subspan(begin, end - begin), alphas); },
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

    // ||w_i - w_hat_i||^2 per row.
    template <BitPlaneStorage M>
    std::vector<double> row_objectives(const M& m, MatrixView<const float> target) const {
        check_target("WeightSpaceSolver", m, target);
        Workspace<M::kernels> work(m.group_size());
        std::vector<double> rows(m.rows(), 0.0);
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                const std::size_t begin = m.group_begin(g);
                const std::size_t end = m.group_end(g);
                work.load(m, i, begin, end);
                rows[i] += work.error(target.row(i).subspan(begin, end - begin), current_scales(m, i, g));
            }
        }
        return rows;
    }

private:
    template <BitPlaneStorage M>
    static std::array<double, M::kernels> current_scales(const M& m, std::size_t i, std::size_t g) {
        std::array<double, M::kernels> alphas{};
        for (std::size_t k = 0; k < M::kernels; ++k) alphas[k] = static_cast<double>(m.scales(k, i)[g]);
        return alphas;
    }

    // One group's decoded signs, and the one error formula both solve and row_objectives use,
    // so that the scales solve keeps are judged exactly as the objective is reported.
    template <std::size_t K>
    struct Workspace {
        explicit Workspace(std::size_t group_size) : signs(K * group_size), w_hat(group_size) {}

        template <BitPlaneStorage M>
        void load(const M& m, std::size_t i, std::size_t begin, std::size_t end) {
            size = end - begin;
            for (std::size_t k = 0; k < K; ++k) {
                detail::decode_signs(m, k, i, begin, end, std::span<double>(signs).subspan(k * size, size));
            }
        }

        // ||w - sum_k alpha_k b_k||^2 over the loaded group; w is the group's slice of the target.
        double error(std::span<const float> w, std::span<const double> alphas) {
            const std::span<double> fitted = std::span<double>(w_hat).first(size);
            detail::reconstruct<K>(std::span<const double>(signs).first(K * size), alphas, fitted);
            double sum = 0.0;
            for (std::size_t j = 0; j < size; ++j) {
                const double d = double(w[j]) - fitted[j];
                sum = std::fma(d, d, sum);
            }
            return sum;
        }

        std::size_t size = 0;
        std::vector<double> signs;
        std::vector<double> w_hat;
    };
};

}  // namespace multibool
