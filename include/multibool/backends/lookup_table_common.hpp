#pragma once
// The target-independent parts of the table-lookup products (lookup_table_gemv.hpp for static
// dispatch, highway_dynamic_dispatch.hpp for dynamic dispatch): the int8 table storage and its
// scalar parts, the argument checks, the threading and the copy that undoes a tile's slot order.
// The SIMD parts are per target, in lookup_table_kernels-inl.hpp; this header does not include
// Highway, so it is compiled once whatever the number of targets.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

// The int8 tables of a batch of activation vectors for one LookupTableMatrix column layout:
// per token, per chunk, 16 entries indexed by the chunk's 4 weight bits (bit q set: +x_q).
class LookupTables {
public:
    static constexpr std::size_t entries = 16;
    static constexpr std::size_t chunk_columns = 4;
    // Entries are stored as level + 128 in [1, 255]: unsigned bytes add up in 16-bit lanes
    // without sign extension.
    static constexpr int bias = 128;

    // quantize_block(x, block, inverse, table) writes the 2 * block.pairs tables of a block, one
    // after the other from `table` on, from the block's activations times `inverse` (a target's
    // kernel: lookup_table_kernels-inl.hpp). Everything else is computed here.
    template <class QuantizeBlock>
    LookupTables(std::span<const LookupTableBlock> blocks, std::size_t pairs_per_row, MatrixView<const float> xs,
                 std::size_t threads, QuantizeBlock quantize_block)
        : tokens_(xs.rows()),
          chunks_per_token_(2 * pairs_per_row),
          blocks_per_token_(blocks.size()),
          tables_(tokens_ * chunks_per_token_ * entries),
          block_scales_(tokens_ * blocks.size()) {
        // Shared out by (token, block), so that one token's tables are built by every thread too.
        const std::size_t units = tokens_ * blocks.size();
        parallel_for(threads, units, blocks_per_unit_of_work, [&](std::size_t first, std::size_t last) {
            std::vector<float> magnitudes;
            for (std::size_t u = first; u < last; ++u) {
                const std::size_t t = u / blocks.size(), b = u % blocks.size();
                build(blocks[b], b, xs.row(t), t, magnitudes, quantize_block);
            }
        });
    }

    [[nodiscard]] std::size_t tokens() const noexcept { return tokens_; }
    // Token t's tables, chunk after chunk (16 bytes each), in the matrix's pair order.
    [[nodiscard]] const std::uint8_t* tables(std::size_t t) const noexcept {
        return tables_.data() + t * chunks_per_token_ * entries;
    }
    // The value one table unit stands for, per block of token t.
    [[nodiscard]] const float* block_scales(std::size_t t) const noexcept {
        return block_scales_.data() + t * blocks_per_token_;
    }

private:
    // About 2000 columns: enough to amortize handing work to a thread.
    static constexpr std::size_t blocks_per_unit_of_work = 8;

    template <class QuantizeBlock>
    void build(const LookupTableBlock& block, std::size_t b, std::span<const float> x, std::size_t t,
               std::vector<float>& magnitudes, QuantizeBlock& quantize_block) {
        // The largest |sum| of a table entry is a chunk's sum of |x|; it maps to 127.
        magnitudes.assign(2 * block.pairs, 0.0f);
        for (std::size_t j = block.begin; j < block.end; ++j)
            magnitudes[(j - block.begin) / chunk_columns] += std::fabs(x[j]);
        const float largest = *std::max_element(magnitudes.begin(), magnitudes.end());
        const float total = std::accumulate(magnitudes.begin(), magnitudes.end(), 0.0f);
        if (!std::isfinite(total)) detail::throw_not_finite_activation("LookupTables", x, block, t);
        block_scales_[t * blocks_per_token_ + b] = largest / float(int8_max_level);
        const float inverse = largest > 0.0f ? float(int8_max_level) / largest : 0.0f;
        quantize_block(x, block, inverse, tables_.data() + (t * chunks_per_token_ + 2 * block.first_pair) * entries);
    }

    std::size_t tokens_;
    std::size_t chunks_per_token_;
    std::size_t blocks_per_token_;
    std::vector<std::uint8_t> tables_;
    std::vector<float> block_scales_;
};

namespace detail {

// The shapes of Y = X W_hat^T, and the tile height the matrix was packed for against the one the
// running target reads.
template <std::size_t K, class Scale>
void check_gemm_arguments(const char* who, const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs,
                          MatrixView<float> ys, std::size_t target_tile_rows) {
    check_length(who, "columns of X", m.cols(), xs.cols());
    check_length(who, "columns of Y", m.rows(), ys.cols());
    check_length(who, "rows of Y (tokens)", xs.rows(), ys.rows());
    // An empty matrix (e.g. of a default-constructed layer) is read by no target.
    if (m.rows() != 0 && m.tile_rows() != target_tile_rows) {
        throw std::invalid_argument(std::string(who) + ": the matrix was packed for tiles of " +
                                    std::to_string(m.tile_rows()) + " rows, this target reads " +
                                    std::to_string(target_tile_rows));
    }
}

// Shares the tiles of m out among `threads`; tile_product(tile, y_tile) fills y_tile (tokens x
// tile_rows, zeroed, in the kernel's slot order) and the rows are copied to ys in row order
// (row_of_slot(slot): the tile row a kernel writes in that slot).
template <std::size_t K, class Scale, class RowOfSlot, class TileProduct>
void for_each_tile(const LookupTableMatrix<K, Scale>& m, MatrixView<float> ys, std::size_t threads,
                   RowOfSlot row_of_slot, TileProduct tile_product) {
    const std::size_t n = m.tile_rows();
    const std::size_t tokens = ys.rows();
    std::vector<std::size_t> rows_of_slots(n);
    for (std::size_t slot = 0; slot < n; ++slot) rows_of_slots[slot] = row_of_slot(slot);
    parallel_for(threads, m.tiles(), 1, [&](std::size_t first, std::size_t last) {
        std::vector<float> y_tile(tokens * n);
        for (std::size_t tile = first; tile < last; ++tile) {
            std::fill(y_tile.begin(), y_tile.end(), 0.0f);
            tile_product(tile, y_tile.data());
            const std::size_t rows = std::min(n, m.rows() - tile * n);
            for (std::size_t t = 0; t < tokens; ++t) {
                const auto y = ys.row(t).subspan(tile * n, rows);
                for (std::size_t slot = 0; slot < n; ++slot) {
                    const std::size_t r = rows_of_slots[slot];
                    if (r < rows) y[r] = y_tile[t * n + slot];
                }
            }
        }
    });
}

}  // namespace detail

}  // namespace multibool
