#pragma once
// The scalar reference backend: plain loops over the packed planes, written to be read.
// Every SIMD backend is tested against it. Multiply-adds are explicit std::fma calls so that
// results do not depend on where the compiler chooses to contract a * b + c.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/packed_columns.hpp"

namespace multibool {

struct ScalarBackend {
    static constexpr std::string_view name = "scalar";

    // Takes a thread count like every backend, so backends are interchangeable; the reference
    // itself runs on the caller's thread.
    ScalarBackend() noexcept = default;
    explicit ScalarBackend(std::size_t /*threads*/) noexcept {}
    [[nodiscard]] static constexpr std::size_t threads() noexcept { return 1; }

    template <BitPlaneStorage M>
    void gemv(const M& m, std::span<const float> x, std::span<float> y) const {
        using Word = typename M::word_type;
        check_length("ScalarBackend::gemv", "x", m.cols(), x.size());
        check_length("ScalarBackend::gemv", "y", m.rows(), y.size());
        accumulate_rows(m, y, 1.0f, [&](std::span<const Word> plane, std::size_t begin, std::size_t end) {
            // s = sum_{j in g} b_j x_j.
            float s = 0.0f;
            for_each_word<Word>(begin, end, [&](std::size_t w, Word mask) {
                for (std::size_t b = 0; b < M::word_bits; ++b) {
                    if ((mask >> b) & Word{1}) {
                        s = std::fma(sign_of(plane[w], b), x[w * M::word_bits + b], s);
                    }
                }
            });
            return s;
        });
    }

    template <BitPlaneStorage M>
    void gemm(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        check_length("ScalarBackend::gemm", "columns of X", m.cols(), xs.cols());
        check_length("ScalarBackend::gemm", "columns of Y", m.rows(), ys.cols());
        check_length("ScalarBackend::gemm", "rows of Y (tokens)", xs.rows(), ys.rows());
        for (std::size_t t = 0; t < xs.rows(); ++t) gemv(m, xs.row(t), ys.row(t));
    }

    template <BitPlaneStorage M>
    void gemv_transposed(const M& m, std::span<const float> dy, std::span<float> dx) const {
        using Word = typename M::word_type;
        check_length("ScalarBackend::gemv_transposed", "dy", m.rows(), dy.size());
        check_length("ScalarBackend::gemv_transposed", "dx", m.cols(), dx.size());
        std::fill(dx.begin(), dx.end(), 0.0f);
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (std::size_t k = 0; k < M::kernels; ++k) {
                const auto plane = m.plane_row(k, i);
                const auto alpha = m.scales(k, i);
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    const float c = static_cast<float>(alpha[g]) * dy[i];
                    for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) {
                        for (std::size_t b = 0; b < M::word_bits; ++b) {
                            if ((mask >> b) & Word{1}) {
                                float& dxj = dx[w * M::word_bits + b];
                                dxj = std::fma(sign_of(plane[w], b), c, dxj);
                            }
                        }
                    });
                }
            }
        }
    }

    template <BitPlaneStorage M>
    void gemm_transposed(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        check_length("ScalarBackend::gemm_transposed", "columns of dY", m.rows(), dys.cols());
        check_length("ScalarBackend::gemm_transposed", "columns of dX", m.cols(), dxs.cols());
        check_length("ScalarBackend::gemm_transposed", "rows of dX (tokens)", dys.rows(), dxs.rows());
        for (std::size_t t = 0; t < dys.rows(); ++t) gemv_transposed(m, dys.row(t), dxs.row(t));
    }

    template <BitPlaneStorage M>
    void gemv_int8(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        using Word = typename M::word_type;
        using Q = Int8Activations<Word>;
        check_length("ScalarBackend::gemv_int8", "x", m.cols(), xq.size());
        check_length("ScalarBackend::gemv_int8", "y", m.rows(), y.size());
        accumulate_rows(m, y, xq.scale(), [&](std::span<const Word> plane, std::size_t begin, std::size_t end) {
            // s = sum_t c_t * (#{j: u_tj = 1, b_j = +1} - #{j: u_tj = 1, b_j = -1}), exact in integers.
            std::int64_t s = 0;
            for_each_word<Word>(begin, end, [&](std::size_t w, Word mask) {
                for (std::size_t t = 0; t < Q::planes; ++t) {
                    const Word u = Word(xq.plane(t)[w] & mask);
                    s += Q::plane_weight[t] *
                         (std::popcount(Word(u & plane[w])) - std::popcount(Word(u & Word(~plane[w]))));
                }
            });
            return static_cast<float>(s);
        });
    }

    template <BitPlaneStorage M>
    void gemv_boolean(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        using Word = typename M::word_type;
        check_length("ScalarBackend::gemv_boolean", "x", m.cols(), xb.size());
        check_length("ScalarBackend::gemv_boolean", "y", m.rows(), y.size());
        const auto xw = xb.words();
        accumulate_rows(m, y, 1.0f, [&](std::span<const Word> plane, std::size_t begin, std::size_t end) {
            // s = |g| - 2 * (number of positions where weight and activation signs differ).
            int s = 0;
            for_each_word<Word>(begin, end, [&](std::size_t w, Word mask) {
                s += std::popcount(mask) - 2 * std::popcount(Word((plane[w] ^ xw[w]) & mask));
            });
            return static_cast<float>(s);
        });
    }

private:
    // +1 for a set bit, -1 for a clear one, computed rather than branched on: random bits would
    // mispredict half the time. Multiplying by it is exact.
    template <class Word>
    static float sign_of(Word word, std::size_t b) noexcept {
        return float(int((word >> b) & Word{1}) * 2 - 1);
    }

    // The skeleton every forward product shares: y_i = output_scale * sum_k sum_g alpha_k[i,g] * s_k[i,g],
    // where group_sum(plane row, first column, end column) returns s_k[i,g].
    template <class M, class GroupSum>
    static void accumulate_rows(const M& m, std::span<float> y, float output_scale, GroupSum group_sum) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            float acc = 0.0f;
            for (std::size_t k = 0; k < M::kernels; ++k) {
                const auto plane = m.plane_row(k, i);
                const auto alpha = m.scales(k, i);
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    acc =
                        std::fma(static_cast<float>(alpha[g]), group_sum(plane, m.group_begin(g), m.group_end(g)), acc);
                }
            }
            y[i] = acc * output_scale;
        }
    }
};

}  // namespace multibool
