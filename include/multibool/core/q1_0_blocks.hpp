#pragma once
// ggml's Q1_0 type is a multi-Boolean matrix with K = 1 and G = 128: per block of 128 inputs one
// fp16 scale d, then 16 bytes whose bit j % 8 of byte j / 8 is weight j's sign (1 → +d, 0 → −d;
// ggml's block_q1_0). That is exactly the packed-bit layout of a plane row (column j is bit j % w
// of word j / w, 1 = +1) read little-endian, so both directions copy bytes and never round.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/half.hpp"

namespace multibool {

inline constexpr std::size_t q1_0_block_columns = 128;
inline constexpr std::size_t q1_0_block_bytes = sizeof(std::uint16_t) + q1_0_block_columns / 8;

template <class Word = std::uint64_t>
using Q1_0Matrix = BitPlaneMatrix<1, q1_0_block_columns, half, Word>;

namespace detail {
inline void check_q1_0_columns(std::size_t cols) {
    if (cols == 0 || cols % q1_0_block_columns != 0) {
        throw std::invalid_argument("Q1_0: a row of " + std::to_string(cols) + " columns; Q1_0 blocks cover " +
                                    std::to_string(q1_0_block_columns) + " inputs, so the columns must be a multiple");
    }
}
}  // namespace detail

// rows × cols weights stored as Q1_0 blocks, row after row, into a K = 1, G = 128 matrix.
// Throws std::invalid_argument when the sizes disagree or a scale is not finite.
template <class Word = std::uint64_t>
Q1_0Matrix<Word> q1_0_matrix(std::span<const std::byte> blocks, std::size_t rows, std::size_t cols) {
    detail::check_q1_0_columns(cols);
    const std::size_t blocks_per_row = cols / q1_0_block_columns;
    if (blocks.size() / q1_0_block_bytes / blocks_per_row < rows ||
        blocks.size() != rows * blocks_per_row * q1_0_block_bytes) {
        throw std::invalid_argument("Q1_0: " + std::to_string(blocks.size()) + " bytes for a " + std::to_string(rows) +
                                    "x" + std::to_string(cols) + " matrix, which takes " +
                                    std::to_string(rows * blocks_per_row * q1_0_block_bytes));
    }
    constexpr std::size_t sign_bytes = q1_0_block_columns / 8;
    std::vector<Word> words(rows * cols / bits_of<Word>);
    std::vector<half> scales(rows * blocks_per_row);
    for (std::size_t b = 0; b < scales.size(); ++b) {
        const std::byte* block = blocks.data() + b * q1_0_block_bytes;
        std::uint16_t d = 0;
        std::memcpy(&d, block, sizeof d);
        scales[b] = half::from_bits(d);
        std::memcpy(words.data() + b * (sign_bytes / sizeof(Word)), block + sizeof d, sign_bytes);
    }
    return Q1_0Matrix<Word>(rows, cols, std::move(words), std::move(scales));
}

// The matrix as Q1_0 blocks, row after row: the inverse of q1_0_matrix, byte for byte.
template <class Word>
std::vector<std::byte> q1_0_blocks(const Q1_0Matrix<Word>& m) {
    detail::check_q1_0_columns(m.cols());
    constexpr std::size_t sign_bytes = q1_0_block_columns / 8;
    const std::size_t blocks_per_row = m.cols() / q1_0_block_columns;
    std::vector<std::byte> out(m.rows() * blocks_per_row * q1_0_block_bytes);
    for (std::size_t i = 0; i < m.rows(); ++i) {
        const auto row = m.plane_row(0, i);
        for (std::size_t g = 0; g < blocks_per_row; ++g) {
            std::byte* block = out.data() + (i * blocks_per_row + g) * q1_0_block_bytes;
            const std::uint16_t d = m.scale(0, i, g).bits();
            std::memcpy(block, &d, sizeof d);
            std::memcpy(block + sizeof d, row.data() + g * (sign_bytes / sizeof(Word)), sign_bytes);
        }
    }
    return out;
}

}  // namespace multibool
