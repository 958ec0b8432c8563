#pragma once
// Level expansion: the batched alternative to the table-lookup products (docs/METHOD.md §2). For a
// batch of tokens, each tile of rows and block of columns of a LookupTableMatrix has its K bit
// planes expanded once into one int8 level per weight,
//     q_ij = sum_k a_k[i,b] * (2 b_kij - 1),   a_k[i,b] = round(alpha_k[i,g] / s[i,b]),
//     s[i,b] = sum_k |alpha_k[i,g]| / alpha_limit<K>,
// and multiplied with int8 activations (one scale per token and block) by 8-bit dot products; the
// expanded tile serves every token of the batch, so the cost per token no longer grows with K.
// Both roundings are bounded: |W_hat_ij - s q_ij| <= K s / 2 and |x_j - u x_j| <= u / 2 for the
// activation scale u (tests/lookup_table_checks.hpp states the resulting bound per output).
// This header is target-independent; the kernels are in level_expansion_kernels-inl.hpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

// The grid s makes sum_k |a_k| at most 127 (a level never leaves int8, and level + 128 fits a
// byte): rounding adds at most 1/2 per kernel, so the limit leaves K/2 of headroom. A row whose
// grid is zero or not finite gets zero levels (a non-finite grid then shows in its outputs).
template <std::size_t K>
inline constexpr int alpha_limit = int8_max_level - static_cast<int>(K / 2);

// The smallest batch the packed products multiply by level expansion rather than table lookup.
// On a 4096 x 4096 matrix (one AVX-512 VNNI thread) its dot products cost about 57 us per token
// whatever K, plus the expansion once per product; table lookup costs about 40 us per token and
// kernel. Level expansion is then 1.1x as fast at K = 3 from 8 tokens, and at K = 2 from 16
// (bench/README.md, "level expansion and the polling pool", has the measurements); at K = 1 it
// barely pays.
template <std::size_t K>
inline constexpr std::size_t level_expansion_min_tokens = K >= 3   ? 8
                                                          : K == 2 ? 16
                                                                   : std::numeric_limits<std::size_t>::max();

// The activations of a batch quantized to int8 per token and LookupTableMatrix column block
// (u = max |x| / 127 over the block, x ~ u * value). Values are stored chunk-major: the 4 values
// of chunk c (columns 4c..4c+3 of the matrix's pair order, zero past a block's end) for token 0,
// then token 1, and so on, so a kernel reads several tokens' chunks from one pointer.
class BlockInt8Activations {
public:
    static constexpr std::size_t chunk_columns = 4;

    // quantize_block(x, block, inverse, values) writes round(x_j * inverse) for the block's columns
    // (a target's kernel, or a plain loop); everything else is done here.
    template <class QuantizeBlock>
    BlockInt8Activations(std::span<const LookupTableBlock> blocks, std::size_t pairs_per_row,
                         MatrixView<const float> xs, std::size_t threads, QuantizeBlock quantize_block)
        : tokens_(xs.rows()),
          blocks_(blocks.size()),
          values_(tokens_ * pairs_per_row * 2 * chunk_columns, std::int8_t{0}),
          scales_(tokens_ * blocks_),
          sums_(tokens_ * blocks_) {
        parallel_for(threads, tokens_, 1, [&](std::size_t first, std::size_t last) {
            std::vector<std::int8_t> block_values;
            for (std::size_t t = first; t < last; ++t) {
                const auto x = xs.row(t);
                for (std::size_t b = 0; b < blocks.size(); ++b) {
                    const LookupTableBlock& block = blocks[b];
                    float largest = 0.0f;
                    bool finite = true;
                    for (std::size_t j = block.begin; j < block.end; ++j) {
                        largest = std::max(largest, std::fabs(x[j]));
                        finite = finite && std::isfinite(x[j]);
                    }
                    if (!finite) detail::throw_not_finite_activation("BlockInt8Activations", x, block, t);
                    const float inverse = largest > 0.0f ? float(int8_max_level) / largest : 0.0f;
                    const std::size_t chunks = 2 * block.pairs;
                    block_values.assign(chunks * chunk_columns, std::int8_t{0});
                    quantize_block(x, block, inverse, block_values.data());
                    std::int32_t sum = 0;
                    for (const std::int8_t value : block_values) sum += value;
                    for (std::size_t c = 0; c < chunks; ++c) {
                        std::copy_n(block_values.data() + c * chunk_columns, chunk_columns,
                                    values_.data() + ((2 * block.first_pair + c) * tokens_ + t) * chunk_columns);
                    }
                    scales_[t * blocks_ + b] = largest / float(int8_max_level);
                    sums_[t * blocks_ + b] = sum;
                }
            }
        });
    }

    [[nodiscard]] std::size_t tokens() const noexcept { return tokens_; }
    // Chunk c's values of every token: token t's 4 from index 4 t on.
    [[nodiscard]] const std::int8_t* chunk(std::size_t c) const noexcept {
        return values_.data() + c * tokens_ * chunk_columns;
    }
    [[nodiscard]] float scale(std::size_t t, std::size_t b) const noexcept { return scales_[t * blocks_ + b]; }
    // The sum of token t's values over block b (the kernels' unsigned weights need it).
    [[nodiscard]] std::int32_t sum(std::size_t t, std::size_t b) const noexcept { return sums_[t * blocks_ + b]; }

private:
    std::size_t tokens_;
    std::size_t blocks_;
    std::vector<std::int8_t> values_;
    std::vector<float> scales_;
    std::vector<std::int32_t> sums_;
};

// A tile's rows in the order the level-expansion kernels produce them: one 32-bit lane per row,
// vector m of a tile holding, in 16-byte block j, rows 16 j + 4 m + (0..3).
[[nodiscard]] inline std::size_t level_expansion_row_of_slot(std::size_t slot, std::size_t tile_rows) noexcept {
    const std::size_t lanes = tile_rows / 4;
    const std::size_t m = slot / lanes;
    const std::size_t within = slot % lanes;
    return 16 * (within / 4) + 4 * m + within % 4;
}

}  // namespace multibool
