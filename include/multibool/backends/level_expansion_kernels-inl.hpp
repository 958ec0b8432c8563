// The per-target kernels of the level-expansion products (level_expansion.hpp has the method and
// its bound), as a Highway "-inl" header included by lookup_table_kernels-inl.hpp, whose scale
// loads it shares, once per target. Not compiled for Highway's scalar fallbacks (no byte
// shuffles): there the table-lookup products serve every batch.
//
// Per-target include guard (Highway's toggle). No #pragma once here.
#if defined(MULTIBOOL_LEVEL_EXPANSION_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MULTIBOOL_LEVEL_EXPANSION_KERNELS_INL_H_
#undef MULTIBOOL_LEVEL_EXPANSION_KERNELS_INL_H_
#else
#define MULTIBOOL_LEVEL_EXPANSION_KERNELS_INL_H_
#endif

#include <hwy/highway.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "multibool/backends/level_expansion.hpp"
#include "multibool/backends/lookup_table_common.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/core/matrix_view.hpp"

#if HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128

HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace HWY_NAMESPACE {
namespace level_expansion_kernels {

namespace hn = hwy::HWY_NAMESPACE;

// AVX-512 VNNI's vpdpbusd adds four u8 x s8 products per 32-bit lane in one instruction. This
// Highway has no portable op for it: the static AVX3_DL target built with VNNI calls it, every
// other target computes the same integers with 16-bit multiply-adds.
#if HWY_TARGET == HWY_AVX3_DL && defined(__AVX512VNNI__)
#define MULTIBOOL_LEVEL_EXPANSION_VNNI 1
#else
#define MULTIBOOL_LEVEL_EXPANSION_VNNI 0
#endif

// Tokens that share each load of an expanded weight vector: their accumulators must stay in
// registers (32 vector registers with AVX-512, 16 below; the 16-bit path needs two per token).
inline constexpr std::size_t token_step = HWY_MAX_BYTES >= 64 ? 12 : 4;

// Within every 16-byte block: byte 4 l + q of vector m reads byte 4 m + l (row 4 m + l of the
// block), and chunk h of a pair tests bit 4 h + q.
alignas(16) inline constexpr auto row_spread = [] {
    std::array<std::array<std::uint8_t, 16>, 4> s{};
    for (std::size_t m = 0; m < 4; ++m) {
        for (std::size_t i = 0; i < 16; ++i) s[m][i] = static_cast<std::uint8_t>(4 * m + i / 4);
    }
    return s;
}();
alignas(16) inline constexpr auto chunk_bit = [] {
    std::array<std::array<std::uint8_t, 16>, 2> s{};
    for (std::size_t h = 0; h < 2; ++h) {
        for (std::size_t i = 0; i < 16; ++i) s[h][i] = static_cast<std::uint8_t>(1u << (4 * h + i % 4));
    }
    return s;
}();

// round(x_j * inverse) for a block's columns (rounding half to even, as std::nearbyint).
HWY_INLINE void quantize_activations(std::span<const float> x, const LookupTableBlock& block, float inverse,
                                     std::int8_t* out) {
    const hn::ScalableTag<float> df;
    const hn::Rebind<std::int8_t, decltype(df)> di8;
    const std::size_t lanes = hn::Lanes(df);
    const auto scale = hn::Set(df, inverse);
    std::size_t j = block.begin;
    for (; j + lanes <= block.end; j += lanes) {
        hn::StoreU(hn::DemoteTo(di8, hn::NearestInt(hn::Mul(hn::LoadU(df, x.data() + j), scale))), di8,
                   out + (j - block.begin));
    }
    for (; j < block.end; ++j) out[j - block.begin] = static_cast<std::int8_t>(std::nearbyint(x[j] * inverse));
}

// The slot orders of one tile, computed once per product (row_of_slot divides): the row whose
// scales each table-lookup slot holds, and the table-lookup slot that feeds each output slot.
struct SlotMaps {
    std::vector<std::size_t> row_of_table_slot;
    std::vector<std::size_t> table_slot_of_output;

    template <std::size_t K, class Scale>
    explicit SlotMaps(const LookupTableMatrix<K, Scale>& m)
        : row_of_table_slot(m.tile_rows()), table_slot_of_output(m.tile_rows()) {
        for (std::size_t slot = 0; slot < m.tile_rows(); ++slot) {
            row_of_table_slot[slot] = m.row_of_slot(slot);
            table_slot_of_output[slot] = m.slot_of_row(level_expansion_row_of_slot(slot, m.tile_rows()));
        }
    }
};

// The quantities of one tile's block before expansion (level_expansion.hpp's formulas, lane by
// lane): a_k and 128 - sum_k a_k per row in row order, the grid s per output slot.
template <std::size_t K>
struct BlockAlphas {
    static constexpr std::size_t max_rows = HWY_MAX_BYTES;
    alignas(64) std::array<std::array<std::int8_t, max_rows>, K> level{};
    alignas(64) std::array<std::uint8_t, max_rows> base{};
    alignas(64) std::array<float, max_rows> scale{};
};

template <std::size_t K, class Scale>
HWY_INLINE void prepare_alphas(const LookupTableMatrix<K, Scale>& m, std::size_t tile, std::size_t b,
                               const SlotMaps& maps, BlockAlphas<K>& out) {
    const hn::ScalableTag<float> df;
    const hn::Rebind<std::int32_t, decltype(df)> di32;
    const std::size_t n = m.tile_rows();
    const std::size_t lanes = hn::Lanes(df);
    const auto* scales = m.tile_scales(tile).data() + b * K * n;
    alignas(64) std::array<std::array<std::int32_t, BlockAlphas<K>::max_rows>, K> level;
    alignas(64) std::array<float, BlockAlphas<K>::max_rows> grid;
    for (std::size_t slot = 0; slot < n; slot += lanes) {
        std::array<hn::Vec<decltype(df)>, K> alpha;
        auto total = hn::Zero(df);
        for (std::size_t k = 0; k < K; ++k) {
            alpha[k] = lookup_table_kernels::load_scales(df, scales + k * n + slot);
            total = hn::Add(total, hn::Abs(alpha[k]));
        }
        const auto s = hn::Div(total, hn::Set(df, float(alpha_limit<K>)));
        // A grid that is zero or not finite gives zero levels (alpha_limit).
        const auto usable = hn::And(hn::Gt(s, hn::Zero(df)), hn::Lt(s, hn::Set(df, HUGE_VALF)));
        hn::Store(s, df, grid.data() + slot);
        for (std::size_t k = 0; k < K; ++k) {
            const auto a = hn::NearestInt(hn::Div(alpha[k], s));
            hn::Store(hn::IfThenElseZero(hn::RebindMask(di32, usable), a), di32, level[k].data() + slot);
        }
    }
    for (std::size_t slot = 0; slot < n; ++slot) {
        const std::size_t r = maps.row_of_table_slot[slot];
        std::int32_t sum = 0;
        for (std::size_t k = 0; k < K; ++k) {
            out.level[k][r] = static_cast<std::int8_t>(level[k][slot]);
            sum += level[k][slot];
        }
        out.base[r] = static_cast<std::uint8_t>(128 - sum);
    }
    for (std::size_t slot = 0; slot < n; ++slot) out.scale[slot] = grid[maps.table_slot_of_output[slot]];
}

// Writes level + 128 of every weight of one tile's block, chunk after chunk: for chunk c (4
// columns) the 4 vectors m = 0..3 hold, per 32-bit lane, the 4 levels of one row (vector m,
// block j, lane l: row 16 j + 4 m + l).
template <std::size_t K, class Scale>
HWY_INLINE void expand_block(const LookupTableMatrix<K, Scale>& m, std::size_t tile, const LookupTableBlock& block,
                             const BlockAlphas<K>& alphas, std::uint8_t* expanded) {
    const hn::ScalableTag<std::uint8_t> du8;
    using V = hn::Vec<decltype(du8)>;
    const std::size_t n = hn::Lanes(du8);
    std::array<V, 4> spread, base;
    std::array<V, 2> bit;
    std::array<std::array<V, 4>, K> twice;
    for (std::size_t h = 0; h < 2; ++h) bit[h] = hn::LoadDup128(du8, chunk_bit[h].data());
    for (std::size_t v = 0; v < 4; ++v) {
        spread[v] = hn::LoadDup128(du8, row_spread[v].data());
        base[v] = hn::TableLookupBytes(hn::LoadU(du8, alphas.base.data()), spread[v]);
        for (std::size_t k = 0; k < K; ++k) {
            const auto a = hn::TableLookupBytes(
                hn::LoadU(du8, reinterpret_cast<const std::uint8_t*>(alphas.level[k].data())), spread[v]);
            twice[k][v] = hn::Add(a, a);
        }
    }
    // level + 128 = (128 - sum_k a_k) + sum over set bits of 2 a_k, in bytes (mod 256, exact).
    const std::uint8_t* weights = m.tile_weights(tile).data() + block.first_pair * K * n;
    for (std::size_t p = 0; p < block.pairs; ++p) {
        std::array<std::array<V, 4>, 2> level{base, base};
        lookup_table_kernels::for_each_kernel<K>([&](auto k) HWY_ATTR {
            const auto bits = hn::LoadU(du8, weights + (p * K + k) * n);
            for (std::size_t v = 0; v < 4; ++v) {
                const auto rows = hn::TableLookupBytes(bits, spread[v]);
                for (std::size_t h = 0; h < 2; ++h) {
                    level[h][v] =
                        hn::IfThenElse(hn::TestBit(rows, bit[h]), hn::Add(level[h][v], twice[k][v]), level[h][v]);
                }
            }
        });
        for (std::size_t h = 0; h < 2; ++h) {
            for (std::size_t v = 0; v < 4; ++v) hn::StoreU(level[h][v], du8, expanded + ((2 * p + h) * 4 + v) * n);
        }
    }
}

#if MULTIBOOL_LEVEL_EXPANSION_VNNI
// acc += per 32-bit lane, the 4 bytes of w (unsigned) times the 4 bytes of x (signed). GCC 12
// copies the accumulator of the vpdpbusd intrinsic from register to register on every pass of a
// loop (half the speed); the asm keeps it in place.
HWY_INLINE void dot_bytes(__m512i& acc, __m512i w, __m512i x) {
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
}

// Per token, the sums of two weight vectors, as separate members: an array of them would be kept
// in memory.
template <std::size_t Tokens>
struct PairSums {
    __m512i first = _mm512_setzero_si512();
    __m512i second = _mm512_setzero_si512();
    PairSums<Tokens - 1> rest;
};
template <>
struct PairSums<0> {};

// Adds chunk products of consecutive tokens (4 bytes each from x on) with both weight vectors.
template <std::size_t Tokens>
HWY_INLINE void accumulate_pair(PairSums<Tokens>& sums, __m512i w0, __m512i w1, const std::int8_t* x) {
    std::int32_t bytes;
    std::memcpy(&bytes, x, sizeof bytes);
    const __m512i xt = _mm512_set1_epi32(bytes);
    dot_bytes(sums.first, w0, xt);
    dot_bytes(sums.second, w1, xt);
    if constexpr (Tokens > 1) accumulate_pair(sums.rest, w0, w1, x + BlockInt8Activations::chunk_columns);
}

template <std::size_t Tokens, class V>
HWY_INLINE void unpack_pair(const PairSums<Tokens>& sums, V* first, V* second) {
    *first = V{sums.first};
    *second = V{sums.second};
    if constexpr (Tokens > 1) unpack_pair(sums.rest, first + 1, second + 1);
}
#endif

// Adds the block's products for tokens [first_token, first_token + Tokens) to y_tile (tokens x
// tile_rows, in the expansion's slot order). Each weight load serves every token of the call, and
// each activation load two weight vectors (with VNNI). Not inlined: its register allocation then
// does not depend on the caller.
template <std::size_t Tokens>
HWY_NOINLINE void block_product(const std::uint8_t* expanded, const BlockInt8Activations& xq,
                                const LookupTableBlock& block, std::size_t b, const float* grid,
                                std::size_t first_token, float* y_tile) {
    const hn::ScalableTag<std::uint8_t> du8;
    const hn::Repartition<std::int32_t, decltype(du8)> di32;
    const hn::Repartition<float, decltype(du8)> df;
    const std::size_t n = hn::Lanes(du8);
    const std::size_t lanes = hn::Lanes(di32);
    using VI = hn::Vec<decltype(di32)>;
    const std::size_t chunks = 2 * block.pairs;
    // Chunk c's values of the call's tokens: 4 bytes per token, from x + c * chunk_stride on.
    const std::size_t chunk_stride = xq.tokens() * BlockInt8Activations::chunk_columns;
    const std::int8_t* x = xq.chunk(2 * block.first_pair) + first_token * BlockInt8Activations::chunk_columns;
    // The weights were stored as level + 128: their products carry 128 times the token's sum.
    const auto add_to_outputs = [&](std::size_t v, const std::array<VI, Tokens>& acc) HWY_ATTR {
        const auto row_grid = hn::LoadU(df, grid + v * lanes);
        for (std::size_t t = 0; t < Tokens; ++t) {
            const auto sum = hn::ConvertTo(df, hn::Sub(acc[t], hn::Set(di32, 128 * xq.sum(first_token + t, b))));
            float* y = y_tile + (first_token + t) * n + v * lanes;
            hn::StoreU(hn::MulAdd(hn::Mul(row_grid, hn::Set(df, xq.scale(first_token + t, b))), sum, hn::LoadU(df, y)),
                       df, y);
        }
    };
#if MULTIBOOL_LEVEL_EXPANSION_VNNI
    for (std::size_t v = 0; v < 4; v += 2) {
        PairSums<Tokens> sums;
        for (std::size_t c = 0; c < chunks; ++c) {
            accumulate_pair(sums, _mm512_loadu_si512(expanded + (c * 4 + v) * n),
                            _mm512_loadu_si512(expanded + (c * 4 + v + 1) * n), x + c * chunk_stride);
        }
        std::array<VI, Tokens> first, second;
        unpack_pair(sums, first.data(), second.data());
        add_to_outputs(v, first);
        add_to_outputs(v + 1, second);
    }
#else
    // The even and the odd bytes of each 16-bit lane apart, widened: two multiply-adds of 16-bit
    // pairs give each 32-bit lane its four products.
    const hn::Repartition<std::int16_t, decltype(du8)> di16;
    const hn::Repartition<std::uint16_t, decltype(du8)> du16;
    const auto low_byte = hn::Set(du16, std::uint16_t{0x00FF});
    for (std::size_t v = 0; v < 4; ++v) {
        std::array<VI, Tokens> acc, acc_odd;
        for (std::size_t t = 0; t < Tokens; ++t) {
            acc[t] = hn::Zero(di32);
            acc_odd[t] = hn::Zero(di32);
        }
        for (std::size_t c = 0; c < chunks; ++c) {
            const auto w = hn::BitCast(du16, hn::LoadU(du8, expanded + (c * 4 + v) * n));
            const auto w_even = hn::BitCast(di16, hn::And(w, low_byte));
            const auto w_odd = hn::BitCast(di16, hn::ShiftRight<8>(w));
            for (std::size_t t = 0; t < Tokens; ++t) {
                std::int32_t bytes;
                std::memcpy(&bytes, x + c * chunk_stride + t * BlockInt8Activations::chunk_columns, sizeof bytes);
                const auto xt = hn::BitCast(di16, hn::Set(di32, bytes));
                acc[t] = hn::ReorderWidenMulAccumulate(di32, w_even, hn::ShiftRight<8>(hn::ShiftLeft<8>(xt)), acc[t],
                                                       acc_odd[t]);
                acc[t] = hn::ReorderWidenMulAccumulate(di32, w_odd, hn::ShiftRight<8>(xt), acc[t], acc_odd[t]);
            }
        }
        for (std::size_t t = 0; t < Tokens; ++t) acc[t] = hn::RearrangeToOddPlusEven(acc[t], acc_odd[t]);
        add_to_outputs(v, acc);
    }
#endif
}

// Calls block_product<r> for a batch's last r < token_step tokens.
template <std::size_t... r>
HWY_INLINE void remaining_tokens_product(std::index_sequence<r...>, std::size_t remaining, const std::uint8_t* expanded,
                                         const BlockInt8Activations& xq, const LookupTableBlock& block, std::size_t b,
                                         const float* grid, std::size_t first_token, float* y_tile) {
    ((remaining == r + 1 ? block_product<r + 1>(expanded, xq, block, b, grid, first_token, y_tile) : void()), ...);
}

template <std::size_t K, class Scale>
void tile_product(const LookupTableMatrix<K, Scale>& m, std::size_t tile, const BlockInt8Activations& xq,
                  const SlotMaps& maps, float* y_tile) {
    // The largest block's levels: 2 chunks per pair, 4 vectors per chunk.
    constexpr std::size_t max_chunks =
        2 * LookupTableMatrix<K, Scale>::block_columns / LookupTableMatrix<K, Scale>::columns_per_pair;
    alignas(64) std::array<std::uint8_t, max_chunks * 4 * HWY_MAX_BYTES> expanded;
    BlockAlphas<K> alphas;
    for (std::size_t b = 0; b < m.blocks().size(); ++b) {
        const LookupTableBlock& block = m.blocks()[b];
        prepare_alphas(m, tile, b, maps, alphas);
        expand_block(m, tile, block, alphas, expanded.data());
        std::size_t t = 0;
        for (; t + token_step <= xq.tokens(); t += token_step) {
            block_product<token_step>(expanded.data(), xq, block, b, alphas.scale.data(), t, y_tile);
        }
        remaining_tokens_product(std::make_index_sequence<token_step - 1>{}, xq.tokens() - t, expanded.data(), xq,
                                 block, b, alphas.scale.data(), t, y_tile);
    }
}

// Whether this target multiplies bytes in one instruction: only then do batches default to
// level expansion (the 16-bit path computes the same integers at about half the speed).
inline constexpr bool byte_dot_product = MULTIBOOL_LEVEL_EXPANSION_VNNI;

#undef MULTIBOOL_LEVEL_EXPANSION_VNNI

}  // namespace level_expansion_kernels

// Y = X W_hat^T by level expansion, for this target: quantizes the activations, then shares the
// tiles of rows out among `threads`, each tile's blocks expanded once for every token.
template <std::size_t K, class Scale>
void level_expansion_gemm_target(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                                 std::size_t threads) {
    namespace kernels = level_expansion_kernels;
    detail::check_gemm_arguments("level_expansion_gemm", m, xs, ys, lookup_table_kernels::tile_rows());
    const BlockInt8Activations xq(
        m.blocks(), m.pairs_per_row(), xs, threads,
        [](std::span<const float> x, const LookupTableBlock& block, float inverse, std::int8_t* out)
            HWY_ATTR { kernels::quantize_activations(x, block, inverse, out); });
    const std::size_t n = m.tile_rows();
    const kernels::SlotMaps maps(m);
    detail::for_each_tile(
        m, ys, threads, [n](std::size_t slot) { return level_expansion_row_of_slot(slot, n); },
        [&](std::size_t tile, float* y_tile) HWY_ATTR { kernels::tile_product(m, tile, xq, maps, y_tile); });
}

}  // namespace HWY_NAMESPACE
}  // namespace multibool
HWY_AFTER_NAMESPACE();

#endif  // SIMD targets

#endif  // per-target include guard
