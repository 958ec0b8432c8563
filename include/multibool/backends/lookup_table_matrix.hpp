#pragma once
// LookupTableMatrix: a BitPlaneStorage reordered once for the table-lookup products (docs/METHOD.md §2, the
// T-MAC layout idea). Rows are cut into tiles of `tile_rows` (one SIMD vector of bytes), columns
// into blocks inside one group, and each block into pairs of 4-column chunks. For every tile,
// block, pair and kernel, byte r holds row r's 4 weight bits of the first chunk in its low nibble
// and of the second chunk in its high nibble, so one vector load feeds tile_rows table lookups
// per nibble. The BitPlaneMatrix stays the storage of record; this is a read-only copy.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/packed_bits.hpp"

namespace multibool {

// Columns [begin, end) of group `group`; its chunk pairs are [first_pair, first_pair + pairs)
// of the row's pair sequence. The last pair is padded with columns that read as -1 and meet a
// zero activation, so they add nothing.
struct LookupTableBlock {
    std::size_t begin = 0;
    std::size_t end = 0;
    std::size_t group = 0;
    std::size_t first_pair = 0;
    std::size_t pairs = 0;
};

namespace detail {
// Both kinds of batched activations refuse a block they cannot quantize, naming the culprit: the
// first value that is not finite, or the block whose sum of |x| overflows.
[[noreturn]] inline void throw_not_finite_activation(const char* who, std::span<const float> x,
                                                     const LookupTableBlock& block, std::size_t t) {
    std::size_t j = block.begin;
    while (j < block.end && std::isfinite(x[j])) ++j;
    if (j == block.end) {
        throw std::invalid_argument(std::string(who) + ": the sum of |x| over columns " + std::to_string(block.begin) +
                                    ".." + std::to_string(block.end - 1) + " of token " + std::to_string(t) +
                                    " overflows float");
    }
    throw std::invalid_argument(std::string(who) + ": activation " + std::to_string(j) + " of token " +
                                std::to_string(t) + " is " + std::to_string(x[j]) + ", not a finite number");
}
}  // namespace detail

// Scales are read as float: 16-bit scale types stay 16-bit (half the bytes to stream), wider ones
// are narrowed to float once at packing.
template <class Scale>
using lookup_table_scale_t = std::conditional_t<sizeof(Scale) == 2, Scale, float>;

template <std::size_t K, class Scale>
class LookupTableMatrix {
public:
    using scale_type = lookup_table_scale_t<Scale>;
    static constexpr std::size_t kernels = K;
    static constexpr std::size_t columns_per_pair = 8;
    // A 16-bit lane sums 2 biased lookups (<= 255 each) per pair of a block: 2 * 32 * 255 = 16320
    // for 256 columns, well inside 65535 (the limit would be 1024 columns).
    static constexpr std::size_t block_columns = 256;
    static_assert(2 * (block_columns / columns_per_pair) * 255 <= 65535,
                  "LookupTableMatrix: a block's lookups must fit a 16-bit lane");

    LookupTableMatrix() = default;

    template <BitPlaneStorage M>
    LookupTableMatrix(const M& m, std::size_t tile_rows) : rows_(m.rows()), cols_(m.cols()), tile_rows_(tile_rows) {
        static_assert(M::kernels == K, "LookupTableMatrix: K differs from the source matrix's kernel count");
        if (tile_rows == 0 || tile_rows % 4 != 0) {
            throw std::invalid_argument("LookupTableMatrix: tile_rows must be a positive multiple of 4, got " +
                                        std::to_string(tile_rows));
        }
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            for (std::size_t begin = m.group_begin(g); begin < m.group_end(g); begin += block_columns) {
                const std::size_t end = std::min(m.group_end(g), begin + block_columns);
                const std::size_t pairs = (end - begin + columns_per_pair - 1) / columns_per_pair;
                blocks_.push_back({begin, end, g, pairs_per_row_, pairs});
                pairs_per_row_ += pairs;
            }
        }
        slot_of_row_.resize(tile_rows);
        for (std::size_t slot = 0; slot < tile_rows; ++slot) slot_of_row_[row_of_slot(slot)] = slot;
        weights_.assign(tiles() * tile_weight_bytes(), std::uint8_t{0});
        scales_.assign(tiles() * tile_scale_count(), scale_type{});
        for (std::size_t i = 0; i < rows_; ++i) pack_row(m, i);
    }

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t tile_rows() const noexcept { return tile_rows_; }
    // A default-constructed (empty) matrix has no tiles.
    [[nodiscard]] std::size_t tiles() const noexcept {
        return tile_rows_ == 0 ? 0 : (rows_ + tile_rows_ - 1) / tile_rows_;
    }
    [[nodiscard]] std::size_t pairs_per_row() const noexcept { return pairs_per_row_; }
    [[nodiscard]] std::span<const LookupTableBlock> blocks() const noexcept { return blocks_; }
    // Bytes a product streams: the packed bits and the scales, padding included.
    [[nodiscard]] std::size_t bytes() const noexcept { return weights_.size() + scales_.size() * sizeof(scale_type); }

    // Tile t's bits, ordered block, pair, kernel, row: K * pairs_per_row * tile_rows bytes.
    [[nodiscard]] std::span<const std::uint8_t> tile_weights(std::size_t t) const noexcept {
        return std::span<const std::uint8_t>(weights_).subspan(t * tile_weight_bytes(), tile_weight_bytes());
    }
    // Kernels produce a tile's rows in slot order: the even rows of the first half, the even rows
    // of the second half, then the odd rows likewise (see lookup_table_gemv.hpp).
    [[nodiscard]] std::size_t row_of_slot(std::size_t slot) const noexcept {
        const std::size_t quarter = tile_rows_ / 4;
        const std::size_t half_start = (slot / quarter) % 2 == 0 ? 0 : tile_rows_ / 2;
        return half_start + 2 * (slot % quarter) + slot / (2 * quarter);
    }
    // The inverse of row_of_slot: the slot of tile row r.
    [[nodiscard]] std::size_t slot_of_row(std::size_t r) const noexcept { return slot_of_row_[r]; }
    // Tile t's scales, ordered block, kernel, slot: alpha_k[row_of_slot(slot), group of the block].
    [[nodiscard]] std::span<const scale_type> tile_scales(std::size_t t) const noexcept {
        return std::span<const scale_type>(scales_).subspan(t * tile_scale_count(), tile_scale_count());
    }

private:
    [[nodiscard]] std::size_t tile_weight_bytes() const noexcept { return K * pairs_per_row_ * tile_rows_; }
    [[nodiscard]] std::size_t tile_scale_count() const noexcept { return blocks_.size() * K * tile_rows_; }

    template <class M>
    void pack_row(const M& m, std::size_t i) {
        const std::size_t tile = i / tile_rows_;
        const std::size_t r = i % tile_rows_;
        const std::size_t slot = slot_of_row_[r];
        std::uint8_t* weights = weights_.data() + tile * tile_weight_bytes();
        scale_type* scales = scales_.data() + tile * tile_scale_count();
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
            const LookupTableBlock& block = blocks_[b];
            for (std::size_t k = 0; k < K; ++k) {
                scales[(b * K + k) * tile_rows_ + slot] = scale_type(static_cast<float>(m.scales(k, i)[block.group]));
                const auto plane = m.plane_row(k, i);
                for (std::size_t p = 0; p < block.pairs; ++p) {
                    const std::size_t begin = block.begin + p * columns_per_pair;
                    const std::size_t end = std::min(block.end, begin + columns_per_pair);
                    weights[((block.first_pair + p) * K + k) * tile_rows_ + r] =
                        std::uint8_t(bits_at(plane, begin) & low_bits(end - begin));
                }
            }
        }
    }

    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::size_t tile_rows_ = 0;
    std::size_t pairs_per_row_ = 0;
    std::vector<std::size_t> slot_of_row_;
    std::vector<LookupTableBlock> blocks_;
    std::vector<std::uint8_t> weights_;
    std::vector<scale_type> scales_;
};

}  // namespace multibool
