// The per-target kernels of the table-lookup products, as a Highway "-inl" header: it is compiled
// once per target it is included for. lookup_table_gemv.hpp includes it once, for the static
// target the build flags select (static dispatch); highway_dynamic_dispatch_unit.hpp includes it
// through hwy/foreach_target.h, once for every target Highway can dispatch to (dynamic dispatch).
// Everything target-independent (table storage, checks, threading) is in lookup_table_common.hpp.
//
// Per 4-activation chunk the 16 signed sums ±x0±x1±x2±x3 are computed once per token and
// quantized to int8 with one scale per column block (as T-MAC does); a byte shuffle then looks up
// tile_rows rows' sums at once. One table set serves every row and all K kernels. The int8 tables
// are the only approximation: the result is exact up to their rounding (<= 0.5 / 127 of the
// block's largest chunk sum per lookup).
//
// Per-target include guard (Highway's toggle: foreach_target.h flips HWY_TARGET_TOGGLE between
// targets). No #pragma once here.
#if defined(MULTIBOOL_LOOKUP_TABLE_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MULTIBOOL_LOOKUP_TABLE_KERNELS_INL_H_
#undef MULTIBOOL_LOOKUP_TABLE_KERNELS_INL_H_
#else
#define MULTIBOOL_LOOKUP_TABLE_KERNELS_INL_H_
#endif

#include <hwy/highway.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "multibool/backends/lookup_table_common.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"

HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace HWY_NAMESPACE {
namespace lookup_table_kernels {

namespace hn = hwy::HWY_NAMESPACE;

// Highway's scalar fallbacks (one lane per vector, or emulated vectors) have no fast byte
// shuffle: there, a plain loop reads the 16-row tiles of the SSSE3 layout. Only dynamic dispatch
// compiles them (lookup_table_gemv.hpp refuses them for static dispatch).
#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
#define MULTIBOOL_LOOKUP_TABLE_PORTABLE 1
#else
#define MULTIBOOL_LOOKUP_TABLE_PORTABLE 0
#endif

// Rows one vector of bytes covers: the tile height of the layout this target reads. The portable
// fallbacks read the tiles of the narrowest SIMD layout (SSSE3: 16 bytes), so a matrix packed for
// it is shared with them.
HWY_INLINE std::size_t tile_rows() noexcept {
#if MULTIBOOL_LOOKUP_TABLE_PORTABLE
    constexpr std::size_t ssse3_tile_rows = 16;
    return ssse3_tile_rows;
#else
    return hn::Lanes(hn::ScalableTag<std::uint8_t>());
#endif
}

template <std::size_t K, class F>
HWY_INLINE void for_each_kernel(F&& f) {
    [&]<std::size_t... k>(std::index_sequence<k...>) HWY_ATTR { (f(std::integral_constant<std::size_t, k>{}), ...); }
    (std::make_index_sequence<K>{});
}

// The 16 signed sums of a chunk (already divided by the table unit), rounded to levels in
// [-127, 127] and stored biased by 128. Entries e and 15 - e are exact negatives: the same terms
// in the same order, and rounding to nearest even is symmetric.
HWY_INLINE void quantized_signed_sums(const std::array<float, 4>& chunk, std::uint8_t* entry) {
    const hn::CappedTag<float, 16> df;
    const hn::Rebind<std::int32_t, decltype(df)> di32;
    const hn::Rebind<std::uint8_t, decltype(df)> du8;
    // sign[q][e] = +1 when bit q of e is set.
    alignas(64) static constexpr auto sign = [] {
        std::array<std::array<float, 16>, 4> s{};
        for (std::size_t q = 0; q < 4; ++q) {
            for (std::size_t e = 0; e < 16; ++e) s[q][e] = ((e >> q) & 1u) ? 1.0f : -1.0f;
        }
        return s;
    }();
    for (std::size_t e = 0; e < 16; e += hn::Lanes(df)) {
        auto sum = hn::Mul(hn::Set(df, chunk[0]), hn::Load(df, sign[0].data() + e));
        for (std::size_t q = 1; q < 4; ++q)
            sum = hn::MulAdd(hn::Set(df, chunk[q]), hn::Load(df, sign[q].data() + e), sum);
        const auto level =
            hn::Clamp(hn::NearestInt(sum), hn::Set(di32, -int8_max_level), hn::Set(di32, int8_max_level));
        hn::StoreU(hn::DemoteTo(du8, hn::Add(level, hn::Set(di32, 128))), du8, entry + e);
    }
}

// Writes the tables of one block's chunks from `table` on (see LookupTables).
HWY_INLINE void quantize_block(std::span<const float> x, const LookupTableBlock& block, float inverse,
                               std::uint8_t* table) {
    constexpr std::size_t columns = LookupTables::chunk_columns;
    for (std::size_t c = 0; c < 2 * block.pairs; ++c) {
        std::array<float, columns> chunk{};
        for (std::size_t q = 0; q < columns; ++q) {
            const std::size_t j = block.begin + c * columns + q;
            if (j < block.end) chunk[q] = x[j] * inverse;
        }
        quantized_signed_sums(chunk, table + c * LookupTables::entries);
    }
}

#if MULTIBOOL_LOOKUP_TABLE_PORTABLE

// The products lane by lane: the same integer sums and the same float operations per output as
// the vector kernel below.
template <std::size_t K, std::size_t Tokens, class Scale>
HWY_INLINE void block_product(const LookupTableMatrix<K, Scale>& m, std::size_t tile, std::size_t b,
                              const LookupTables& tables, std::size_t first_token, float* y_tile) {
    const std::size_t n = m.tile_rows();
    const LookupTableBlock& block = m.blocks()[b];
    const std::uint8_t* block_weights = m.tile_weights(tile).data() + block.first_pair * K * n;
    const auto* block_alpha = m.tile_scales(tile).data() + b * K * n;
    const std::int32_t bias = static_cast<std::int32_t>(2 * block.pairs * LookupTables::bias);
    for (std::size_t t = first_token; t < first_token + Tokens; ++t) {
        const std::uint8_t* table = tables.tables(t) + 2 * block.first_pair * LookupTables::entries;
        const float unit = tables.block_scales(t)[b];
        float* y = y_tile + t * n;
        for (std::size_t slot = 0; slot < n; ++slot) {
            const std::size_t r = m.row_of_slot(slot);
            for (std::size_t k = 0; k < K; ++k) {
                std::int32_t sum = 0;
                for (std::size_t p = 0; p < block.pairs; ++p) {
                    const std::uint8_t bits = block_weights[(p * K + k) * n + r];
                    sum += table[2 * p * LookupTables::entries + (bits & 0x0F)];
                    sum += table[(2 * p + 1) * LookupTables::entries + (bits >> 4)];
                }
                const float scale = static_cast<float>(block_alpha[k * n + slot]) * unit;
                y[slot] = scale * static_cast<float>(sum - bias) + y[slot];
            }
        }
    }
}

#else

template <class D, class Scale>
HWY_INLINE auto load_scales(D df, const Scale* p) {
    if constexpr (std::is_same_v<Scale, float>) {
        return hn::LoadU(df, p);
    } else if constexpr (std::is_same_v<Scale, half>) {
        return hn::PromoteTo(df,
                             hn::LoadU(hn::Rebind<hwy::float16_t, D>(), reinterpret_cast<const hwy::float16_t*>(p)));
    } else {
        static_assert(std::is_same_v<Scale, bfloat16>, "load_scales: float, half or bfloat16");
        // bfloat16 is the top half of a float.
        const hn::Rebind<std::uint32_t, D> du32;
        const auto bits =
            hn::PromoteTo(du32, hn::LoadU(hn::Rebind<std::uint16_t, D>(), reinterpret_cast<const std::uint16_t*>(p)));
        return hn::BitCast(df, hn::ShiftLeft<16>(bits));
    }
}

// Adds W_hat x for tokens [first_token, first_token + Tokens) to y_tile (tokens x tile_rows, in
// the tile's slot order) over one block of columns of one tile. Each 16-bit lane holds an even
// row's lookup in its low byte and the next odd row's in its high byte; summing whole lanes
// (mod 2^16) and the high bytes apart gives both sums with shifts and adds only. Several tokens
// share each load and nibble split of the weights.
template <std::size_t K, std::size_t Tokens, class Scale>
HWY_INLINE void block_product(const LookupTableMatrix<K, Scale>& m, std::size_t tile, std::size_t b,
                              const LookupTables& tables, std::size_t first_token, float* y_tile) {
    using S = typename LookupTableMatrix<K, Scale>::scale_type;
    const hn::ScalableTag<std::uint8_t> du8;
    const hn::Repartition<std::uint16_t, decltype(du8)> du16;
    const hn::Half<decltype(du16)> du16_half;
    const hn::Repartition<std::uint32_t, decltype(du8)> du32;
    const hn::Repartition<std::int32_t, decltype(du8)> di32;
    const hn::Repartition<float, decltype(du8)> df;
    const std::size_t n = hn::Lanes(du8);
    const std::size_t quarter = hn::Lanes(df);
    using V8 = hn::Vec<decltype(du8)>;
    using V16 = hn::Vec<decltype(du16)>;

    const LookupTableBlock& block = m.blocks()[b];
    const std::uint8_t* block_weights = m.tile_weights(tile).data() + block.first_pair * K * n;
    const S* block_alpha = m.tile_scales(tile).data() + b * K * n;
    std::array<const std::uint8_t*, Tokens> table;
    std::array<std::array<V16, K>, Tokens> whole, odd;
    for (std::size_t t = 0; t < Tokens; ++t) {
        table[t] = tables.tables(first_token + t) + 2 * block.first_pair * LookupTables::entries;
        for_each_kernel<K>([&](auto k) HWY_ATTR {
            whole[t][k] = hn::Zero(du16);
            odd[t][k] = hn::Zero(du16);
        });
    }
    const auto low_nibble = hn::Set(du8, std::uint8_t{0x0F});
    for (std::size_t p = 0; p < block.pairs; ++p) {
        std::array<V8, Tokens> first, second;
        for (std::size_t t = 0; t < Tokens; ++t) {
            first[t] = hn::LoadDup128(du8, table[t] + 2 * p * LookupTables::entries);
            second[t] = hn::LoadDup128(du8, table[t] + (2 * p + 1) * LookupTables::entries);
        }
        const std::uint8_t* pair_weights = block_weights + p * K * n;
        for_each_kernel<K>([&](auto k) HWY_ATTR {
            const auto bits = hn::LoadU(du8, pair_weights + k * n);
            const auto low = hn::And(bits, low_nibble);
            const auto high = hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, bits))), low_nibble);
            for (std::size_t t = 0; t < Tokens; ++t) {
                const auto a = hn::BitCast(du16, hn::TableLookupBytes(first[t], low));
                const auto c = hn::BitCast(du16, hn::TableLookupBytes(second[t], high));
                whole[t][k] = hn::Add(whole[t][k], hn::Add(a, c));
                odd[t][k] = hn::Add(odd[t][k], hn::Add(hn::ShiftRight<8>(a), hn::ShiftRight<8>(c)));
            }
        });
    }
    // Every lookup carries the table bias; a row met 2 * pairs of them in this block.
    const auto bias = hn::Set(di32, static_cast<std::int32_t>(2 * block.pairs * LookupTables::bias));
    const auto as_float = [&](auto sums) HWY_ATTR {
        return hn::ConvertTo(df, hn::Sub(hn::BitCast(di32, hn::PromoteTo(du32, sums)), bias));
    };
    for (std::size_t t = 0; t < Tokens; ++t) {
        const auto unit = hn::Set(df, tables.block_scales(first_token + t)[b]);
        float* y = y_tile + (first_token + t) * n;
        auto y0 = hn::LoadU(df, y);
        auto y1 = hn::LoadU(df, y + quarter);
        auto y2 = hn::LoadU(df, y + 2 * quarter);
        auto y3 = hn::LoadU(df, y + 3 * quarter);
        for_each_kernel<K>([&](auto k) HWY_ATTR {
            const S* alpha = block_alpha + k * n;
            const auto even = hn::Sub(whole[t][k], hn::ShiftLeft<8>(odd[t][k]));
            y0 = hn::MulAdd(hn::Mul(load_scales(df, alpha), unit), as_float(hn::LowerHalf(du16_half, even)), y0);
            y1 = hn::MulAdd(hn::Mul(load_scales(df, alpha + quarter), unit), as_float(hn::UpperHalf(du16_half, even)),
                            y1);
            y2 = hn::MulAdd(hn::Mul(load_scales(df, alpha + 2 * quarter), unit),
                            as_float(hn::LowerHalf(du16_half, odd[t][k])), y2);
            y3 = hn::MulAdd(hn::Mul(load_scales(df, alpha + 3 * quarter), unit),
                            as_float(hn::UpperHalf(du16_half, odd[t][k])), y3);
        });
        hn::StoreU(y0, df, y);
        hn::StoreU(y1, df, y + quarter);
        hn::StoreU(y2, df, y + 2 * quarter);
        hn::StoreU(y3, df, y + 3 * quarter);
    }
}

#endif  // MULTIBOOL_LOOKUP_TABLE_PORTABLE

#undef MULTIBOOL_LOOKUP_TABLE_PORTABLE

// Adds W_hat x for every token to y_tile for one tile of rows, block by block so that the block's
// weights stay in L1 while every token uses them.
template <std::size_t K, class Scale>
void tile_product(const LookupTableMatrix<K, Scale>& m, std::size_t tile, const LookupTables& tables, float* y_tile) {
    constexpr std::size_t token_step = 2;
    for (std::size_t b = 0; b < m.blocks().size(); ++b) {
        std::size_t t = 0;
        for (; t + token_step <= tables.tokens(); t += token_step) {
            block_product<K, token_step>(m, tile, b, tables, t, y_tile);
        }
        for (; t < tables.tokens(); ++t) block_product<K, 1>(m, tile, b, tables, t, y_tile);
    }
}

}  // namespace lookup_table_kernels

// The tile height of the LookupTableMatrix layout this target reads.
HWY_INLINE std::size_t lookup_table_tile_rows() noexcept { return lookup_table_kernels::tile_rows(); }

// Y = X W_hat^T through the int8 tables, for this target: builds the tables, then shares the tiles
// of rows out among `threads`.
template <std::size_t K, class Scale>
void table_lookup_gemm_target(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                              std::size_t threads) {
    detail::check_gemm_arguments("lookup_table_gemm", m, xs, ys, lookup_table_kernels::tile_rows());
    const LookupTables tables(
        m.blocks(), m.pairs_per_row(), xs, threads,
        [](std::span<const float> x, const LookupTableBlock& block, float inverse, std::uint8_t* table)
            HWY_ATTR { lookup_table_kernels::quantize_block(x, block, inverse, table); });
    detail::for_each_tile(
        m, ys, threads, [&](std::size_t slot) { return m.row_of_slot(slot); },
        [&](std::size_t tile, float* y_tile) HWY_ATTR { lookup_table_kernels::tile_product(m, tile, tables, y_tile); });
}

}  // namespace HWY_NAMESPACE
}  // namespace multibool
HWY_AFTER_NAMESPACE();

#include "multibool/backends/level_expansion_kernels-inl.hpp"

HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace HWY_NAMESPACE {

// Y = X W_hat^T on a packed matrix, for this target: the entry point of both dispatch modes.
// On targets with byte dot products, batches of level_expansion_min_tokens<K> tokens or more are
// multiplied by level expansion, whose cost per token does not grow with K; everything else
// through the int8 tables.
template <std::size_t K, class Scale>
void lookup_table_gemm_target(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                              std::size_t threads) {
#if HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
    if constexpr (level_expansion_kernels::byte_dot_product) {
        if (xs.rows() >= level_expansion_min_tokens<K>) {
            level_expansion_gemm_target(m, xs, ys, threads);
            return;
        }
    }
#endif
    table_lookup_gemm_target(m, xs, ys, threads);
}

}  // namespace HWY_NAMESPACE
}  // namespace multibool
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
