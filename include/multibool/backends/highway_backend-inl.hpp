// The per-target kernels of HighwayBackend, as a Highway "-inl" header: compiled once per target
// it is included for, inside that target's namespace multibool::HWY_NAMESPACE, so that code built
// for different targets never shares a name (translation units compiled with different -m flags
// then hold different functions, not two definitions of one inline function). highway_backend.hpp
// includes it once, for the static target; highway_dynamic_dispatch_unit.hpp includes it through
// hwy/foreach_target.h, once for every target Highway dispatches to.
//
// Float products decode plane bits to lane masks and select +x or -x per lane. The integer
// products (int8 bit-serial, XNOR+popcount) form the same integer group sums as ScalarBackend
// and go through the same accumulation (backend_common.hpp), so they are bit-identical to it; the
// transposed products are too on targets with fused multiply-add (see there). Every output
// element is computed by one thread in a fixed order: results do not depend on the thread count.
//
// Kernels keep small arrays of vectors in registers, which Highway's sizeless SVE/RVV vector
// types do not allow. Tested on x86: SCALAR (no -m flags), SSE4, AVX2, AVX3 and AVX3_DL.
//
// Per-target include guard (Highway's toggle: foreach_target.h flips HWY_TARGET_TOGGLE between
// targets). No #pragma once here.
#if defined(MULTIBOOL_HIGHWAY_BACKEND_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MULTIBOOL_HIGHWAY_BACKEND_INL_H_
#undef MULTIBOOL_HIGHWAY_BACKEND_INL_H_
#else
#define MULTIBOOL_HIGHWAY_BACKEND_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "multibool/backends/backend_common.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"

HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace HWY_NAMESPACE {
namespace highway_kernels {

namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::ScalableTag<float>;
using FloatVec = hn::Vec<FloatTag>;

// Lane masks are decoded from 64 bits of a plane at a time, so one vector must not hold more.
inline constexpr std::size_t max_float_lanes = HWY_MAX_BYTES / sizeof(float);
static_assert(max_float_lanes <= 64, "HighwayBackend: more than 64 float lanes per vector");

// Rows of W_hat the transposed products expand at once.
inline constexpr std::size_t transposed_row_block = 64;
// Column chunks one transposed tile keeps in registers: independent multiply-add chains hide the latency.
inline constexpr std::size_t tile_chunks = 4;
// Tokens a batched product handles at once, each plane word decoded to masks once for all of them.
// Forward products keep K group sums per token in registers: measured on AVX-512 (4096 x 4096,
// 16 tokens), more tokens than these spill and run slower than one token at a time.
template <std::size_t K>
inline constexpr std::size_t forward_token_block = K == 1   ? 4
                                                   : K <= 4 ? 2
                                                            : 1;

// Calls f(std::integral_constant<std::size_t, I>()) for I = 0 .. N-1, unrolled at any optimization
// level, so that arrays of vectors indexed by I stay in registers.
template <std::size_t N, class F>
HWY_INLINE void unroll(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) HWY_ATTR { (f(std::integral_constant<std::size_t, I>()), ...); }
    (std::make_index_sequence<N>());
}

// Lane l is true where bit l of bits is set.
HWY_INLINE auto lane_mask(FloatTag d, std::uint64_t bits) noexcept {
    // LoadMaskBits takes lane l from bit l % 8 of byte l / 8 and may read 8 bytes.
    std::uint8_t bytes[8];
    if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(bytes, &bits, sizeof bits);
    } else {
        for (std::size_t b = 0; b < 8; ++b) bytes[b] = static_cast<std::uint8_t>(bits >> (8 * b));
    }
    return hn::LoadMaskBits(d, bytes);
}

// The first count lanes from p, the others zero, reading nothing past p + count: for the last,
// partial chunk of a row or group.
HWY_INLINE FloatVec load_first(FloatTag d, const float* p, std::size_t count) noexcept {
    float lanes[max_float_lanes] = {};
    std::copy_n(p, count, lanes);
    return hn::LoadU(d, lanes);
}

HWY_INLINE void store_first(FloatTag d, FloatVec v, float* p, std::size_t count) noexcept {
    float lanes[max_float_lanes];
    hn::StoreU(v, d, lanes);
    std::copy_n(lanes, count, p);
}

// ---- Forward float products: y_t[i] = sum_g sum_k alpha_k[i,g] * sum_{j in g} b_kij x_tj.

// One output row for Tokens tokens at once: every plane word is decoded to lane masks once and
// used for all tokens, and each x chunk is loaded once for all K planes.
template <std::size_t Tokens, class M>
void forward_row(const M& m, std::size_t i, const std::array<const float*, Tokens>& x,
                 const std::array<float*, Tokens>& y) {
    constexpr std::size_t K = M::kernels;
    const FloatTag d;
    const std::size_t lanes = hn::Lanes(d);
    const std::size_t chunks_per_window = 64 / lanes;
    std::array<std::span<const typename M::word_type>, K> planes;
    for (std::size_t k = 0; k < K; ++k) planes[k] = m.plane_row(k, i);
    std::array<FloatVec, Tokens> acc;
    unroll<Tokens>([&](auto t) HWY_ATTR { acc[t] = hn::Zero(d); });
    for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
        const std::size_t end = m.group_end(g);
        std::array<std::array<FloatVec, K>, Tokens> s;
        unroll<Tokens>([&](auto t) HWY_ATTR { unroll<K>([&](auto k) HWY_ATTR { s[t][k] = hn::Zero(d); }); });
        // s_tk += the chunk from column j of x_t, signed by bits_k; lanes past `count` of x are zero.
        const auto add_chunk = [&](const std::array<std::uint64_t, K>& bits, std::size_t j,
                                   std::size_t count) HWY_ATTR {
            std::array<FloatVec, Tokens> xv;
            std::array<FloatVec, Tokens> neg_xv;
            unroll<Tokens>([&](auto t) HWY_ATTR {
                xv[t] = count == lanes ? hn::LoadU(d, x[t] + j) : load_first(d, x[t] + j, count);
                neg_xv[t] = hn::Neg(xv[t]);
            });
            unroll<K>([&](auto k) HWY_ATTR {
                const auto mask = lane_mask(d, bits[k]);
                unroll<Tokens>([&](auto t)
                                   HWY_ATTR { s[t][k] = hn::Add(s[t][k], hn::IfThenElse(mask, xv[t], neg_xv[t])); });
            });
        };
        std::array<std::uint64_t, K> bits;
        std::size_t j = m.group_begin(g);
        // Whole chunks, a 64-bit window of each plane at a time.
        while (j + lanes <= end) {
            unroll<K>([&](auto k) HWY_ATTR { bits[k] = bits_at(planes[k], j); });
            const std::size_t chunks = std::min(chunks_per_window, (end - j) / lanes);
            for (std::size_t q = 0; q < chunks; ++q, j += lanes) {
                add_chunk(bits, j, lanes);
                unroll<K>([&](auto k) HWY_ATTR { bits[k] >>= lanes % 64; });
            }
        }
        if (j < end) {
            unroll<K>([&](auto k) HWY_ATTR { bits[k] = bits_at(planes[k], j); });
            add_chunk(bits, j, end - j);
        }
        unroll<K>([&](auto k) HWY_ATTR {
            const FloatVec a = hn::Set(d, static_cast<float>(m.scales(k, i)[g]));
            unroll<Tokens>([&](auto t) HWY_ATTR { acc[t] = hn::MulAdd(a, s[t][k], acc[t]); });
        });
    }
    unroll<Tokens>([&](auto t) HWY_ATTR { y[t][i] = hn::GetLane(hn::SumOfLanes(d, acc[t])); });
}

// Calls f(std::integral_constant<std::size_t, Tokens>, inputs, outputs) over the rows of `in` and
// `out` (one per token), Block tokens at a time and then one by one, with arrays of row pointers.
template <std::size_t Block, class F>
void for_each_token_block(MatrixView<const float> in, MatrixView<float> out, F&& f) {
    std::size_t t = 0;
    for (; t + Block <= in.rows(); t += Block) {
        std::array<const float*, Block> inputs;
        std::array<float*, Block> outputs;
        for (std::size_t b = 0; b < Block; ++b) {
            inputs[b] = in.row(t + b).data();
            outputs[b] = out.row(t + b).data();
        }
        f(std::integral_constant<std::size_t, Block>(), inputs, outputs);
    }
    for (; t < in.rows(); ++t) {
        f(std::integral_constant<std::size_t, 1>(), std::array<const float*, 1>{in.row(t).data()},
          std::array<float*, 1>{out.row(t).data()});
    }
}

// Rows [begin, end) for every token of xs: blocks of rows whose planes stay in cache while
// blocks of tokens go over them.
template <class M>
void forward_rows(const M& m, MatrixView<const float> xs, MatrixView<float> ys, std::size_t begin, std::size_t end) {
    for (std::size_t row_block = begin; row_block < end; row_block += row_grain) {
        const std::size_t row_end = std::min(end, row_block + row_grain);
        for_each_token_block<forward_token_block<M::kernels>>(xs, ys,
                                                              [&](auto tokens, const auto& x, const auto& y) HWY_ATTR {
                                                                  for (std::size_t i = row_block; i < row_end; ++i)
                                                                      forward_row<decltype(tokens)::value>(m, i, x, y);
                                                              });
    }
}

// ---- Transposed products: dx_t[j] = sum_i dy_t[i] * W_hat_ij, W_hat_ij = sum_k +-alpha_k[i,g(j)].
//
// A block of rows by a span of columns of W_hat is first expanded to floats (the K terms added in
// kernel order), then every token runs a register-blocked multiply-add over it: the cost per
// token no longer grows with K. Each dx_t[j] is one chain of fused multiply-adds in row order,
// which is ScalarBackend's arithmetic on targets with FMA (on the others, MulAdd rounds twice).

// The groups the columns of each N-lane chunk belong to (chunk c covers columns [c N, c N + N)),
// found once per product: a chunk may straddle groups when the group size is not a multiple of N.
struct ChunkGroups {
    std::vector<std::size_t> first;
    std::vector<std::size_t> last;
};

template <class M>
ChunkGroups chunk_groups(const M& m, std::size_t lanes) {
    const std::size_t chunks = (m.cols() + lanes - 1) / lanes;
    constexpr std::size_t unset = std::numeric_limits<std::size_t>::max();
    ChunkGroups groups{std::vector<std::size_t>(chunks, unset), std::vector<std::size_t>(chunks, 0)};
    for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
        for (std::size_t c = m.group_begin(g) / lanes; c * lanes < m.group_end(g); ++c) {
            if (groups.first[c] == unset) groups.first[c] = g;
            groups.last[c] = g;
        }
    }
    return groups;
}

// Columns of W_hat expanded at once (32 KB of floats over transposed_row_block rows: L1-resident
// while every token goes over them), and tokens per register tile: 6 x tile_chunks accumulators
// fit AVX-512's 32 registers, 3 x tile_chunks about fit the 16 of narrower targets.
inline constexpr std::size_t expanded_columns = 128;
inline constexpr std::size_t transposed_tokens = HWY_MAX_BYTES >= 64 ? 6 : 3;

// W_hat over rows [row_begin, row_end) and chunks [c0, c0 + chunks), row-major into `expanded`
// (span chunks of lanes per row).
template <class M>
void expand_columns(const M& m, const ChunkGroups& groups, std::size_t c0, std::size_t chunks, std::size_t row_begin,
                    std::size_t row_end, std::size_t span, float* expanded) {
    constexpr std::size_t K = M::kernels;
    constexpr std::size_t no_group = std::numeric_limits<std::size_t>::max();
    const FloatTag d;
    const std::size_t lanes = hn::Lanes(d);
    for (std::size_t i = row_begin; i < row_end; ++i) {
        float* out = expanded + (i - row_begin) * span * lanes;
        // The scales of the group the previous chunk lay in: converted once per group, not per chunk.
        std::array<FloatVec, K> a;
        std::size_t a_group = no_group;
        for (std::size_t q = 0; q < chunks; ++q) {
            const std::size_t c = c0 + q;
            if (groups.first[c] != groups.last[c] || groups.last[c] != a_group) {
                unroll<K>([&](auto k) HWY_ATTR {
                    const auto alpha = m.scales(k, i);
                    // alpha_k[i, g(j)] per lane: a chunk straddling groups takes each group's lanes.
                    std::size_t g = groups.last[c];
                    a[k] = hn::Set(d, static_cast<float>(alpha[g]));
                    while (g > groups.first[c]) {
                        --g;
                        const auto in_group = hn::FirstN(d, m.group_end(g) - c * lanes);
                        a[k] = hn::IfThenElse(in_group, hn::Set(d, static_cast<float>(alpha[g])), a[k]);
                    }
                });
                a_group = groups.first[c] == groups.last[c] ? groups.last[c] : no_group;
            }
            FloatVec w = hn::Zero(d);
            unroll<K>([&](auto k) HWY_ATTR {
                const FloatVec term =
                    hn::IfThenElse(lane_mask(d, bits_at(m.plane_row(k, i), c * lanes)), a[k], hn::Neg(a[k]));
                w = k == 0 ? term : hn::Add(w, term);
            });
            hn::Store(w, d, out + q * lanes);
        }
    }
}

// dx_t[chunks q0 .. q0 + chunks of the span] += sum over the expanded rows of dy_t[i] * W_hat_ij,
// for Tokens tokens; chunks <= tile_chunks, the last one `last_count` lanes wide. Chunks past
// `chunks` are computed on the tile's first chunk and never stored: the accumulators stay in
// registers with every index known at compile time. They load only what that chunk holds, as a
// full-width load of a short first chunk would read past the end of dx.
template <std::size_t Tokens>
void transposed_tile(const float* expanded, std::size_t span, std::size_t q0, std::size_t chunks,
                     std::size_t last_count, std::size_t rows, const std::array<const float*, Tokens>& dy,
                     const std::array<float*, Tokens>& dx) {
    const FloatTag d;
    const std::size_t lanes = hn::Lanes(d);
    std::array<std::size_t, tile_chunks> chunk;
    std::array<std::size_t, tile_chunks> count;
    std::array<std::array<FloatVec, tile_chunks>, Tokens> acc;
    unroll<tile_chunks>([&](auto q) HWY_ATTR {
        chunk[q] = q < chunks ? q0 + q : q0;
        const std::size_t counted = q < chunks ? q : 0;
        count[q] = counted + 1 == chunks ? last_count : lanes;
        unroll<Tokens>([&](auto t) HWY_ATTR {
            float* p = dx[t] + chunk[q] * lanes;
            acc[t][q] = count[q] == lanes ? hn::LoadU(d, p) : load_first(d, p, count[q]);
        });
    });
    for (std::size_t r = 0; r < rows; ++r) {
        const float* w_row = expanded + r * span * lanes;
        std::array<FloatVec, tile_chunks> w;
        unroll<tile_chunks>([&](auto q) HWY_ATTR { w[q] = hn::Load(d, w_row + chunk[q] * lanes); });
        unroll<Tokens>([&](auto t) HWY_ATTR {
            const FloatVec c = hn::Set(d, dy[t][r]);
            unroll<tile_chunks>([&](auto q) HWY_ATTR { acc[t][q] = hn::MulAdd(c, w[q], acc[t][q]); });
        });
    }
    unroll<tile_chunks>([&](auto q) HWY_ATTR {
        if (q >= chunks) return;
        unroll<Tokens>([&](auto t) HWY_ATTR {
            float* p = dx[t] + chunk[q] * lanes;
            if (count[q] == lanes) {
                hn::StoreU(acc[t][q], d, p);
            } else {
                store_first(d, acc[t][q], p, count[q]);
            }
        });
    });
}

// Chunks [begin, end) of every token's dx: zeroed, then per span of columns, rows added block by
// block in order, so each column keeps one multiply-add chain in row order.
template <class M>
void transposed_columns(const M& m, const ChunkGroups& groups, MatrixView<const float> dys, MatrixView<float> dxs,
                        std::size_t begin, std::size_t end) {
    const FloatTag d;
    const std::size_t lanes = hn::Lanes(d);
    const std::size_t span = expanded_columns / lanes;
    HWY_ALIGN float expanded[transposed_row_block * expanded_columns];
    const std::size_t col_end = std::min(m.cols(), end * lanes);
    for (std::size_t t = 0; t < dxs.rows(); ++t) {
        std::fill(dxs.row(t).begin() + std::ptrdiff_t(begin * lanes), dxs.row(t).begin() + std::ptrdiff_t(col_end),
                  0.0f);
    }
    for (std::size_t c0 = begin; c0 < end; c0 += span) {
        const std::size_t chunks = std::min(span, end - c0);
        for (std::size_t row_begin = 0; row_begin < m.rows(); row_begin += transposed_row_block) {
            const std::size_t row_end = std::min(m.rows(), row_begin + transposed_row_block);
            expand_columns(m, groups, c0, chunks, row_begin, row_end, span, expanded);
            for_each_token_block<transposed_tokens>(
                dys, dxs, [&](auto tokens, const auto& dy, const auto& dx) HWY_ATTR {
                    constexpr std::size_t Tokens = decltype(tokens)::value;
                    std::array<const float*, Tokens> dy_rows;
                    std::array<float*, Tokens> dx_span;
                    for (std::size_t t = 0; t < Tokens; ++t) {
                        dy_rows[t] = dy[t] + row_begin;
                        dx_span[t] = dx[t] + c0 * lanes;
                    }
                    for (std::size_t q = 0; q < chunks; q += tile_chunks) {
                        const std::size_t tile = std::min(tile_chunks, chunks - q);
                        const std::size_t last_count = std::min(lanes, m.cols() - (c0 + q + tile - 1) * lanes);
                        transposed_tile<Tokens>(expanded, span, q, tile, last_count, row_end - row_begin, dy_rows,
                                                dx_span);
                    }
                });
        }
    }
}

// ---- Integer products: exact integer group sums, then ScalarBackend's float accumulation.

// Whether PopulationCount on 64-bit lanes beats a POPCNT per word. Not on x86 below AVX3_DL,
// where Highway 1.0.3 emulates it with byte shuffles (measured: twice as slow on AVX3), nor on
// the one- or two-lane scalar fallbacks.
inline constexpr bool vector_popcount =
    HWY_ARCH_X86 ? HWY_TARGET == HWY_AVX3_DL : HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128;

// The per-word sums of a plane row: vector_sum(v, w) gives those of the vector v of words loaded
// from word w, as int64 lanes (64-bit words only); word_sum(word, w, mask) gives one word's.
template <class Word, class VectorSum, class WordSum>
void whole_word_sums(std::span<const Word> row, std::span<std::int64_t> out, VectorSum vector_sum, WordSum word_sum) {
    std::size_t w = 0;
    if constexpr (vector_popcount && std::is_same_v<Word, std::uint64_t>) {
        const hn::ScalableTag<std::uint64_t> du;
        const hn::RebindToSigned<decltype(du)> di;
        for (; w + hn::Lanes(du) <= row.size(); w += hn::Lanes(du)) {
            hn::StoreU(hn::BitCast(di, vector_sum(hn::LoadU(du, row.data() + w), w)), di, out.data() + w);
        }
    }
    for (; w < row.size(); ++w) out[w] = word_sum(row[w], w, std::numeric_limits<Word>::max());
}

// Bit-serial int8 activations (docs/METHOD.md §2): per word sum_t c_t popcount(u_t & b); a group's sum is
// twice that minus sum_{j in g} u_j, which depends on the activations alone and is found once.
template <class Word>
class Int8GroupSums {
public:
    using Activations = Int8Activations<Word>;

    template <class M>
    Int8GroupSums(const M& m, const Activations& xq) {
        for (std::size_t t = 0; t < Activations::planes; ++t) planes_[t] = xq.plane(t);
        activation_sums_.resize(m.groups_per_row());
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) HWY_ATTR {
                activation_sums_[g] += word_sum(std::numeric_limits<Word>::max(), w, mask);
            });
        }
    }

    [[nodiscard]] std::int64_t word_sum(Word b, std::size_t w, Word mask) const noexcept {
        std::int64_t s = 0;
        for (std::size_t t = 0; t < Activations::planes; ++t) {
            s += Activations::plane_weight[t] * std::popcount(Word(planes_[t][w] & b & mask));
        }
        return s;
    }

    void whole_words(std::span<const Word> row, std::span<std::int64_t> out) const {
        whole_word_sums(
            row, out,
            [&](auto b, std::size_t w) HWY_ATTR {
                const hn::DFromV<decltype(b)> du;
                const auto count = [&](std::size_t t) HWY_ATTR {
                    return hn::PopulationCount(hn::And(hn::LoadU(du, planes_[t].data() + w), b));
                };
                // Horner over the planes of weight 2^t, then the sign plane's -128; modulo 2^64 the
                // sum is exact and reads back as the signed value.
                auto s = count(6);
                for (std::size_t t = 6; t-- > 0;) s = hn::Add(hn::Add(s, s), count(t));
                return hn::Sub(s, hn::ShiftLeft<7>(count(7)));
            },
            [&](Word b, std::size_t w, Word mask) HWY_ATTR { return word_sum(b, w, mask); });
    }

    [[nodiscard]] std::int64_t group_sum(std::size_t g, std::int64_t word_sums) const noexcept {
        return 2 * word_sums - activation_sums_[g];
    }

private:
    std::array<std::span<const Word>, Activations::planes> planes_;
    std::vector<std::int64_t> activation_sums_;
};

// XNOR+popcount on ±1 activations: per word the number of sign mismatches; a group's sum is
// |g| - 2 * mismatches.
template <class Word>
class BooleanGroupSums {
public:
    template <class M>
    BooleanGroupSums(const M& m, const BooleanActivations<Word>& xb) : x_(xb.words()), sizes_(m.groups_per_row()) {
        for (std::size_t g = 0; g < sizes_.size(); ++g) sizes_[g] = std::int64_t(m.group_end(g) - m.group_begin(g));
    }

    [[nodiscard]] std::int64_t word_sum(Word b, std::size_t w, Word mask) const noexcept {
        return std::popcount(Word((b ^ x_[w]) & mask));
    }

    void whole_words(std::span<const Word> row, std::span<std::int64_t> out) const {
        whole_word_sums(
            row, out,
            [&](auto b, std::size_t w) HWY_ATTR {
                const hn::DFromV<decltype(b)> du;
                return hn::PopulationCount(hn::Xor(b, hn::LoadU(du, x_.data() + w)));
            },
            [&](Word b, std::size_t w, Word mask) HWY_ATTR { return word_sum(b, w, mask); });
    }

    [[nodiscard]] std::int64_t group_sum(std::size_t g, std::int64_t word_sums) const noexcept {
        return sizes_[g] - 2 * word_sums;
    }

private:
    std::span<const Word> x_;
    std::vector<std::int64_t> sizes_;
};

// The words of one group: a run of whole words, and at most two words cut by the group's edges.
template <class Word>
struct GroupWords {
    std::size_t whole_begin = 0;
    std::size_t whole_end = 0;
    std::size_t cut_count = 0;
    std::array<std::size_t, 2> cut_word{};
    std::array<Word, 2> cut_mask{};
};

// Found once per product rather than per row and kernel.
template <class M>
std::vector<GroupWords<typename M::word_type>> group_words(const M& m) {
    using Word = typename M::word_type;
    std::vector<GroupWords<Word>> groups(m.groups_per_row());
    for (std::size_t g = 0; g < groups.size(); ++g) {
        auto& words = groups[g];
        words.whole_begin = words.whole_end = m.group_begin(g) / bits_of<Word>;
        for_each_word<Word>(m.group_begin(g), m.group_end(g), [&](std::size_t w, Word mask) HWY_ATTR {
            if (mask == std::numeric_limits<Word>::max()) {
                if (words.whole_end == words.whole_begin) words.whole_begin = w;
                words.whole_end = w + 1;
            } else {
                words.cut_word[words.cut_count] = w;
                words.cut_mask[words.cut_count] = mask;
                ++words.cut_count;
            }
        });
    }
    return groups;
}

// Rows [begin, end) of y = output_scale * sum_k sum_g alpha_k[i,g] * s_k[i,g] through the shared
// accumulation: whole words come from sums.whole_words, words cut by a group edge are summed masked.
template <class M, class GroupSums>
void integer_rows(const M& m, const GroupSums& sums, std::span<const GroupWords<typename M::word_type>> groups,
                  float output_scale, std::span<float> y, std::size_t begin, std::size_t end) {
    std::vector<std::int64_t> word_sums(m.words_per_row());
    accumulate_rows(m, y, output_scale, begin, end, [&](std::size_t i, std::size_t k, std::span<float> s) HWY_ATTR {
        const auto plane = m.plane_row(k, i);
        sums.whole_words(plane, word_sums);
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const auto& words = groups[g];
            std::int64_t sum = 0;
            for (std::size_t w = words.whole_begin; w < words.whole_end; ++w) sum += word_sums[w];
            for (std::size_t c = 0; c < words.cut_count; ++c) {
                sum += sums.word_sum(plane[words.cut_word[c]], words.cut_word[c], words.cut_mask[c]);
            }
            s[g] = static_cast<float>(sums.group_sum(g, sum));
        }
    });
}

// ---- The products, threads splitting their outputs.

// Threads split the output rows; each takes every token of its rows.
template <class M>
void forward_products(std::size_t threads, const M& m, MatrixView<const float> xs, MatrixView<float> ys) {
    parallel_for(threads, m.rows(), row_grain,
                 [&](std::size_t begin, std::size_t end) HWY_ATTR { forward_rows(m, xs, ys, begin, end); });
}

// Threads split the columns of dx, in whole tiles; each takes every token of its columns.
template <class M>
void transposed_products(std::size_t threads, const M& m, MatrixView<const float> dys, MatrixView<float> dxs) {
    const auto groups = chunk_groups(m, hn::Lanes(FloatTag()));
    const std::size_t span = expanded_columns / hn::Lanes(FloatTag());
    parallel_for(threads, groups.first.size(), span, [&](std::size_t begin, std::size_t end) HWY_ATTR {
        transposed_columns(m, groups, dys, dxs, begin, end);
    });
}

// Threads split the output rows.
template <class M, class GroupSums>
void integer_products(std::size_t threads, const M& m, const GroupSums& sums, float output_scale, std::span<float> y) {
    const auto groups = group_words(m);
    parallel_for(threads, m.rows(), row_grain, [&](std::size_t begin, std::size_t end) HWY_ATTR {
        integer_rows(m, sums, std::span(groups), output_scale, y, begin, end);
    });
}

template <class M>
void int8_products(std::size_t threads, const M& m, const Int8Activations<typename M::word_type>& xq,
                   std::span<float> y) {
    integer_products(threads, m, Int8GroupSums<typename M::word_type>(m, xq), xq.scale(), y);
}

template <class M>
void boolean_products(std::size_t threads, const M& m, const BooleanActivations<typename M::word_type>& xb,
                      std::span<float> y) {
    integer_products(threads, m, BooleanGroupSums<typename M::word_type>(m, xb), 1.0f, y);
}
}  // namespace highway_kernels
}  // namespace HWY_NAMESPACE
}  // namespace multibool
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
