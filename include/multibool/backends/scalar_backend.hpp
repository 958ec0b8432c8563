#pragma once
// The scalar reference backend: plain loops over the packed planes, written to be read.
// Every other backend is tested against it. Multiply-adds are explicit std::fma calls so that
// results do not depend on where the compiler chooses to contract a * b + c.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "multibool/backends/backend_common.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"

namespace multibool {

class ScalarBackend : public ProductEntryPoints<ScalarBackend> {
public:
    static constexpr std::string_view name = "scalar";

    // Takes a thread count like every backend, so backends are interchangeable; the reference
    // itself runs on the caller's thread.
    using ProductEntryPoints<ScalarBackend>::ProductEntryPoints;
    [[nodiscard]] static constexpr std::size_t threads() noexcept { return 1; }

private:
    friend class ProductEntryPoints<ScalarBackend>;

    // y_t = W_hat x_t, token by token: s_k[i,g] = sum_{j in g} b_kij x_tj.
    template <class M>
    void forward_products(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        using Word = typename M::word_type;
        for (std::size_t t = 0; t < xs.rows(); ++t) {
            const auto x = xs.row(t);
            accumulate_rows(m, ys.row(t), 1.0f, 0, m.rows(), [&](std::size_t i, std::size_t k, std::span<float> s) {
                const auto plane = m.plane_row(k, i);
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    float sum = 0.0f;
                    for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) {
                        for (std::size_t b = 0; b < M::word_bits; ++b) {
                            if ((mask >> b) & Word{1})
                                sum = std::fma(sign_of(plane[w], b), x[w * M::word_bits + b], sum);
                        }
                    });
                    s[g] = sum;
                }
            });
        }
    }

    // dx_t[j] = sum_i dy_t[i] * W_hat_ij: one fused multiply-add per row, in row order, where
    // W_hat_ij = sum_k b_kij * alpha_k[i,g(j)] is added in kernel order.
    template <class M>
    void transposed_products(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        for (std::size_t t = 0; t < dys.rows(); ++t) {
            const auto dy = dys.row(t);
            const auto dx = dxs.row(t);
            std::fill(dx.begin(), dx.end(), 0.0f);
            for (std::size_t i = 0; i < m.rows(); ++i) {
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                        float w = 0.0f;
                        for (std::size_t k = 0; k < M::kernels; ++k) {
                            const auto alpha = static_cast<float>(m.scales(k, i)[g]);
                            const float term = column_is_set(m.plane_row(k, i), j) ? alpha : -alpha;
                            w = k == 0 ? term : w + term;
                        }
                        dx[j] = std::fma(dy[i], w, dx[j]);
                    }
                }
            }
        }
    }

    // s = sum_t c_t * (#{j: u_tj = 1, b_j = +1} - #{j: u_tj = 1, b_j = -1}), exact in integers.
    template <class M>
    void int8_products(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        using Word = typename M::word_type;
        using Q = Int8Activations<Word>;
        accumulate_rows(m, y, xq.scale(), 0, m.rows(), [&](std::size_t i, std::size_t k, std::span<float> s) {
            const auto plane = m.plane_row(k, i);
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                std::int64_t sum = 0;
                for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) {
                    for (std::size_t t = 0; t < Q::planes; ++t) {
                        const Word u = Word(xq.plane(t)[w] & mask);
                        sum += Q::plane_weight[t] *
                               (std::popcount(Word(u & plane[w])) - std::popcount(Word(u & Word(~plane[w]))));
                    }
                });
                s[g] = static_cast<float>(sum);
            }
        });
    }

    // s = |g| - 2 * (number of positions where weight and activation signs differ).
    template <class M>
    void boolean_products(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        using Word = typename M::word_type;
        const auto xw = xb.words();
        accumulate_rows(m, y, 1.0f, 0, m.rows(), [&](std::size_t i, std::size_t k, std::span<float> s) {
            const auto plane = m.plane_row(k, i);
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                int sum = 0;
                for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) {
                    sum += std::popcount(mask) - 2 * std::popcount(Word((plane[w] ^ xw[w]) & mask));
                });
                s[g] = static_cast<float>(sum);
            }
        });
    }

    // +1 for a set bit, -1 for a clear one, computed rather than branched on: random bits would
    // mispredict half the time. Multiplying by it is exact.
    template <class Word>
    static float sign_of(Word word, std::size_t b) noexcept {
        return float(int((word >> b) & Word{1}) * 2 - 1);
    }
};

}  // namespace multibool
