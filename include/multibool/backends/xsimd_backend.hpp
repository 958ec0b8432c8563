#pragma once
// The xsimd backend: the products of ScalarBackend with portable SIMD (xsimd 8.1, the default
// architecture the compiler targets) and threads. Float products decode each plane's bits into
// sign masks over float lanes. The int8 and Boolean products count bits in 64-column windows
// with std::popcount: xsimd 8.1 has no batch popcount, and one popcnt per 64 columns beats
// building one from byte shuffles at these group sizes.
// Every output element is computed by one thread in a fixed order, so results do not depend on
// the thread count; the int8 and Boolean products equal the scalar backend's bit for bit, and the
// transposed products do too where the multiply-add is fused (FMA3 and AVX-512 builds).
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "multibool/backends/backend_common.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"

namespace multibool {

class XsimdBackend : public ProductEntryPoints<XsimdBackend> {
public:
    static constexpr std::string_view name = "xsimd";

    using ProductEntryPoints<XsimdBackend>::ProductEntryPoints;

private:
    friend class ProductEntryPoints<XsimdBackend>;

    template <class M>
    void int8_products(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        using Q = Int8Activations<typename M::word_type>;
        const auto windows = cut_windows<Q::planes>(m, [&](std::size_t c, std::size_t n) {
            std::array<std::uint64_t, Q::planes> u;
            for (std::size_t t = 0; t < Q::planes; ++t) u[t] = bits_at(xq.plane(t), c) & low_bits(n);
            return u;
        });
        // sum_j b_j u_j = 2 * sum_t c_t * popcount(u_t & b) - sum_j u_j: the last term is the same
        // for every row and kernel, so it is counted once per group here.
        std::vector<std::int64_t> sum_u(m.groups_per_row(), 0);
        for (std::size_t g = 0; g < sum_u.size(); ++g) {
            for (std::size_t w = windows.first[g]; w < windows.first[g + 1]; ++w) {
                for (std::size_t t = 0; t < Q::planes; ++t) {
                    sum_u[g] += Q::plane_weight[t] * std::popcount(windows.bits[w][t]);
                }
            }
        }
        integer_rows(m, y, xq.scale(), [&](auto plane, std::size_t g) {
            const std::int64_t s = sum_windows(m, windows, plane, g, [](std::uint64_t b, const auto& u) {
                std::int64_t sum = 0;
                for (std::size_t t = 0; t < Q::planes; ++t) sum += Q::plane_weight[t] * std::popcount(u[t] & b);
                return sum;
            });
            return static_cast<float>(2 * s - sum_u[g]);
        });
    }

    template <class M>
    void boolean_products(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        // Each window holds the activation bits and the mask of the columns it covers.
        const auto windows = cut_windows<2>(m, [&](std::size_t c, std::size_t n) {
            return std::array<std::uint64_t, 2>{bits_at(xb.words(), c) & low_bits(n), low_bits(n)};
        });
        integer_rows(m, y, 1.0f, [&](auto plane, std::size_t g) {
            // s = |g| - 2 * (number of positions where weight and activation signs differ).
            const std::int64_t differ = sum_windows(m, windows, plane, g, [](std::uint64_t b, const auto& x) {
                return std::int64_t{std::popcount((b ^ x[0]) & x[1])};
            });
            return static_cast<float>(std::int64_t(m.group_end(g) - m.group_begin(g)) - 2 * differ);
        });
    }

    using float_batch = xsimd::batch<float>;
    using bits_batch = xsimd::batch<std::uint32_t>;
    static constexpr std::size_t lanes = float_batch::size;
    // Plane bits are decoded a block of 32 columns at a time: one broadcast of the block's bits
    // serves its 32 / lanes chunks of `lanes` columns, each testing its own bits.
    static constexpr std::size_t block_columns = 32;
    static constexpr std::size_t chunks_per_block = block_columns / lanes;
    static_assert(bits_batch::size == lanes && block_columns % lanes == 0,
                  "XsimdBackend: a block of 32 columns must split into whole chunks of lanes");
    using LaneBits = std::array<bits_batch, chunks_per_block>;
    // Tokens sharing one decoded plane chunk in gemm and gemm_transposed; the rest go one by one.
    static constexpr std::size_t token_block = 4;
    // Work split granularity of the transposed products: a multiple of every word width and lane
    // count, so that chunks stay aligned.
    static constexpr std::size_t column_grain = 64;
    // Columns per window of the popcount products: one uint64 of plane bits.
    static constexpr std::size_t window_bits = 64;

    // The block's plane bits in every lane.
    template <class Word>
    static bits_batch block_bits(std::span<const Word> plane, std::size_t c) noexcept {
        return bits_batch(std::uint32_t(bits_at(plane, c)));
    }
    // lane_bits()[q] holds, in lane l, the bit of chunk q's column l within its block.
    static LaneBits lane_bits() noexcept {
        LaneBits lane_bit;
        for (std::size_t q = 0; q < chunks_per_block; ++q) {
            std::array<std::uint32_t, lanes> bit{};
            for (std::size_t l = 0; l < lanes; ++l) bit[l] = std::uint32_t{1} << (q * lanes + l);
            lane_bit[q] = bits_batch::load_unaligned(bit.data());
        }
        return lane_bit;
    }
    // Lane l gets the float sign bit where its plane bit is 0 (weight -1), else 0: XOR-ing it into x
    // gives select(b, x, -x) in one bitwise operation.
    static bits_batch negation_mask(const bits_batch& block, const bits_batch& lane_bit) noexcept {
        return xsimd::select((block & lane_bit) == bits_batch(0u), bits_batch(0x80000000u), bits_batch(0u));
    }
    // a * b + c, rounded once where the target has FMA. xsimd 8.1 gives its AVX-512 architectures
    // no fma of their own: they inherit the generic x * y + z, fused only where the compiler chooses
    // to contract it (not under clang's -ffp-contract=on, nor g++ with AddressSanitizer).
    static float_batch multiply_add(const float_batch& a, const float_batch& b, const float_batch& c) noexcept {
#if XSIMD_WITH_AVX512F
        if constexpr (std::is_base_of_v<xsimd::avx512f, float_batch::arch_type>) return _mm512_fmadd_ps(a, b, c);
#endif
        return xsimd::fma(a, b, c);
    }
    static float_batch negate_where(const float_batch& x, const bits_batch& negation) noexcept {
        return xsimd::bitwise_cast<float_batch>(xsimd::bitwise_cast<bits_batch>(x) ^ negation);
    }

    // The first n lanes from p, zeros after: the last chunk of a group or row may be partial.
    static float_batch load_lanes(const float* p, std::size_t n) noexcept {
        if (n == lanes) return float_batch::load_unaligned(p);
        std::array<float, lanes> buffer{};
        std::copy_n(p, n, buffer.begin());
        return float_batch::load_unaligned(buffer.data());
    }
    static void store_lanes(const float_batch& v, float* p, std::size_t n) noexcept {
        if (n == lanes) {
            v.store_unaligned(p);
        } else {
            std::array<float, lanes> buffer;
            v.store_unaligned(buffer.data());
            std::copy_n(buffer.begin(), n, p);
        }
    }

    // Walks [begin, end) by blocks of 32 columns: bits = decode(c, n) for a block of n columns from
    // c, then chunk(c, n, bits, q) for its chunks q of n <= lanes columns. Whole blocks have a
    // constant shape the compiler unrolls; the last block may be partial.
    template <class Decode, class Chunk>
    static void for_each_chunk(std::size_t begin, std::size_t end, Decode decode, Chunk chunk) {
        std::size_t c = begin;
        for (; c + block_columns <= end; c += block_columns) {
            const auto bits = decode(c, block_columns);
            for (std::size_t q = 0; q < chunks_per_block; ++q) chunk(c + q * lanes, lanes, bits, q);
        }
        if (c < end) {
            const auto bits = decode(c, end - c);
            for (std::size_t q = 0; q * lanes < end - c; ++q) {
                chunk(c + q * lanes, std::min(lanes, end - c - q * lanes), bits, q);
            }
        }
    }

    // Calls block(std::integral_constant<std::size_t, Tokens>, first token) over tokens [0, count),
    // token_block tokens at a time, then one by one.
    template <class Block>
    static void for_each_token_block(std::size_t count, Block block) {
        std::size_t t = 0;
        for (; t + token_block <= count; t += token_block) block(std::integral_constant<std::size_t, token_block>{}, t);
        for (; t < count; ++t) block(std::integral_constant<std::size_t, 1>{}, t);
    }

    // Y = X W_hat^T, rows split across threads.
    template <class M>
    void forward_products(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        parallel_for(threads_, m.rows(), row_grain, [&](std::size_t row_begin, std::size_t row_end) {
            const LaneBits lane_bit = lane_bits();
            for (std::size_t i = row_begin; i < row_end; ++i) {
                for_each_token_block(xs.rows(), [&](auto tokens, std::size_t first) {
                    forward_row<decltype(tokens)::value>(m, i, xs, ys, first, lane_bit);
                });
            }
        });
    }

    // Row i of Y for tokens [first, first + Tokens). Per kernel and group, s = sum_{j in g} b_j x_j is
    // accumulated in lanes for every token from one decoded chunk, then scaled by alpha.
    template <std::size_t Tokens, class M>
    static void forward_row(const M& m, std::size_t i, MatrixView<const float> xs, MatrixView<float> ys,
                            std::size_t first, const LaneBits& lane_bit) {
        std::array<const float*, Tokens> x;
        for (std::size_t t = 0; t < Tokens; ++t) x[t] = xs.row(first + t).data();
        std::array<float_batch, Tokens> acc;
        acc.fill(float_batch(0.0f));
        for (std::size_t k = 0; k < M::kernels; ++k) {
            const auto plane = m.plane_row(k, i);
            const auto alpha = m.scales(k, i);
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                std::array<float_batch, Tokens> s;
                s.fill(float_batch(0.0f));
                const auto decode = [&](std::size_t c, std::size_t) { return block_bits(plane, c); };
                for_each_chunk(m.group_begin(g), m.group_end(g), decode,
                               [&](std::size_t c, std::size_t n, const bits_batch& bits, std::size_t q) {
                                   const bits_batch negation = negation_mask(bits, lane_bit[q]);
                                   for (std::size_t t = 0; t < Tokens; ++t) {
                                       s[t] += negate_where(load_lanes(x[t] + c, n), negation);
                                   }
                               });
                const float_batch a(static_cast<float>(alpha[g]));
                for (std::size_t t = 0; t < Tokens; ++t) acc[t] = multiply_add(a, s[t], acc[t]);
            }
        }
        for (std::size_t t = 0; t < Tokens; ++t) ys(first + t, i) = xsimd::hadd(acc[t]);
    }

    // dX = dY W_hat, columns split across threads.
    template <class M>
    void transposed_products(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        parallel_for(threads_, m.cols(), column_grain, [&](std::size_t col_begin, std::size_t col_end) {
            const LaneBits lane_bit = lane_bits();
            for_each_token_block(dys.rows(), [&](auto tokens, std::size_t first) {
                backward_columns<decltype(tokens)::value>(m, col_begin, col_end, dys, dxs, first, lane_bit);
            });
        });
    }

    // Columns [col_begin, col_end) of dX for tokens [first, first + Tokens): dx_j = fma(dy_i, W_hat_ij, dx_j)
    // over rows i, W_hat_ij = sum_k +-alpha_k[i,g] added in kernel order. That is the scalar
    // backend's arithmetic, so with a fused multiply_add the result is bit-identical.
    template <std::size_t Tokens, class M>
    static void backward_columns(const M& m, std::size_t col_begin, std::size_t col_end, MatrixView<const float> dys,
                                 MatrixView<float> dxs, std::size_t first, const LaneBits& lane_bit) {
        std::array<float*, Tokens> dx_row;
        for (std::size_t t = 0; t < Tokens; ++t) {
            dx_row[t] = dxs.row(first + t).data();
            std::fill(dx_row[t] + col_begin, dx_row[t] + col_end, 0.0f);
        }
        // Groups are consecutive runs of group_size() columns (the last may be shorter).
        const std::size_t first_group = col_begin / m.group_size();
        for (std::size_t i = 0; i < m.rows(); ++i) {
            std::array<std::span<const typename M::word_type>, M::kernels> plane;
            for (std::size_t k = 0; k < M::kernels; ++k) plane[k] = m.plane_row(k, i);
            const auto decode = [&](std::size_t c, std::size_t) {
                std::array<bits_batch, M::kernels> bits;
                for (std::size_t k = 0; k < M::kernels; ++k) bits[k] = block_bits(plane[k], c);
                return bits;
            };
            std::array<float_batch, Tokens> dy;
            for (std::size_t t = 0; t < Tokens; ++t) dy[t] = float_batch(dys(first + t, i));
            for (std::size_t g = first_group; g < m.groups_per_row() && m.group_begin(g) < col_end; ++g) {
                std::array<float_batch, M::kernels> alpha;
                for (std::size_t k = 0; k < M::kernels; ++k)
                    alpha[k] = float_batch(static_cast<float>(m.scales(k, i)[g]));
                const std::size_t begin = std::max(m.group_begin(g), col_begin);
                const std::size_t end = std::min(m.group_end(g), col_end);
                for_each_chunk(begin, end, decode, [&](std::size_t c, std::size_t n, const auto& bits, std::size_t q) {
                    float_batch w = negate_where(alpha[0], negation_mask(bits[0], lane_bit[q]));
                    for (std::size_t k = 1; k < M::kernels; ++k) {
                        w += negate_where(alpha[k], negation_mask(bits[k], lane_bit[q]));
                    }
                    for (std::size_t t = 0; t < Tokens; ++t) {
                        store_lanes(multiply_add(dy[t], w, load_lanes(dx_row[t] + c, n)), dx_row[t] + c, n);
                    }
                });
            }
        }
    }

    // Activation bits cut into windows of at most 64 columns that never cross a group end, built
    // once per call and read by every row. Group g owns windows [first[g], first[g + 1]).
    template <std::size_t Planes>
    struct Windows {
        std::vector<std::array<std::uint64_t, Planes>> bits;
        std::vector<std::size_t> first;
    };

    // window(c, n) returns the planes of columns [c, c + n), zero above bit n.
    template <std::size_t Planes, class M, class Window>
    static Windows<Planes> cut_windows(const M& m, Window window) {
        Windows<Planes> windows;
        windows.first.reserve(m.groups_per_row() + 1);
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            windows.first.push_back(windows.bits.size());
            for (std::size_t c = m.group_begin(g); c < m.group_end(g); c += window_bits) {
                windows.bits.push_back(window(c, std::min(window_bits, m.group_end(g) - c)));
            }
        }
        windows.first.push_back(windows.bits.size());
        return windows;
    }

    // sum over the windows of group g of window_sum(plane bits, activation window).
    template <class M, std::size_t Planes, class WindowSum>
    static std::int64_t sum_windows(const M& m, const Windows<Planes>& windows,
                                    std::span<const typename M::word_type> plane, std::size_t g,
                                    WindowSum window_sum) noexcept {
        std::int64_t s = 0;
        std::size_t c = m.group_begin(g);
        for (std::size_t w = windows.first[g]; w < windows.first[g + 1]; ++w, c += window_bits) {
            s += window_sum(bits_at(plane, c) & low_bits(std::min(window_bits, m.group_end(g) - c)), windows.bits[w]);
        }
        return s;
    }

    // Rows split across threads; the group sums group_sum(plane row, g) go through the shared
    // accumulation, so these products equal ScalarBackend's bit for bit.
    template <class M, class GroupSum>
    void integer_rows(const M& m, std::span<float> y, float output_scale, GroupSum group_sum) const {
        parallel_for(threads_, m.rows(), row_grain, [&](std::size_t begin, std::size_t end) {
            accumulate_rows(m, y, output_scale, begin, end, [&](std::size_t i, std::size_t k, std::span<float> s) {
                const auto plane = m.plane_row(k, i);
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) s[g] = group_sum(plane, g);
            });
        });
    }
};

}  // namespace multibool
