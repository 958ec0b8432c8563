#pragma once
// The one bit layout every packed row uses (weight planes and packed activations alike):
// column j is bit j % w of word j / w, w the word's width; a set bit means +1. Every read of
// that layout (single columns, 64-column windows, word ranges, decoded signs) is written here.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

namespace multibool {

template <class Word>
inline constexpr std::size_t bits_of = std::numeric_limits<Word>::digits;

template <class Word>
constexpr std::size_t words_for_columns(std::size_t cols) noexcept {
    return cols / bits_of<Word> + (cols % bits_of<Word> != 0 ? 1 : 0);
}

// The mask of column j within its word.
template <class Word>
constexpr Word column_mask(std::size_t j) noexcept {
    return Word(Word{1} << (j % bits_of<Word>));
}

template <class Word>
constexpr bool column_is_set(std::span<const Word> row, std::size_t j) noexcept {
    return (row[j / bits_of<Word>] & column_mask<Word>(j)) != 0;
}

template <class Word>
constexpr void set_column(std::span<Word> row, std::size_t j, bool set) noexcept {
    Word& word = row[j / bits_of<Word>];
    word = set ? Word(word | column_mask<Word>(j)) : Word(word & Word(~column_mask<Word>(j)));
}

template <class Word>
constexpr void flip_column(std::span<Word> row, std::size_t j) noexcept {
    row[j / bits_of<Word>] ^= column_mask<Word>(j);
}

// The n lowest bits set (n <= 64).
constexpr std::uint64_t low_bits(std::size_t n) noexcept {
    return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
}

// 64 bits of a packed row from column j on (bit b is column j + b); words past the row read as 0.
template <class Word>
inline std::uint64_t bits_at(std::span<const Word> row, std::size_t j) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        // In little-endian memory a row's bytes hold its columns in order, whatever the word width:
        // one unaligned load instead of assembling narrow words. Near the row's end, see below.
        const auto* bytes = reinterpret_cast<const unsigned char*>(row.data());
        const std::size_t first = j / 8;
        const std::size_t shift = j % 8;
        if (first + 8 + (shift != 0) <= row.size_bytes()) {
            std::uint64_t bits;
            std::memcpy(&bits, bytes + first, sizeof bits);
            return shift == 0 ? bits : (bits >> shift) | (std::uint64_t{bytes[first + 8]} << (64 - shift));
        }
    }
    constexpr std::size_t word_bits = bits_of<Word>;
    constexpr std::size_t words_per_64 = 64 / word_bits;
    const std::size_t first = j / word_bits;
    const std::size_t shift = j % word_bits;
    const auto word = [&](std::size_t w) { return w < row.size() ? std::uint64_t{row[w]} : std::uint64_t{0}; };
    std::uint64_t bits = 0;
    for (std::size_t t = 0; t < words_per_64; ++t) bits |= word(first + t) << (t * word_bits);
    // A shifted window also takes the low bits of the next word.
    return shift == 0 ? bits : (bits >> shift) | (word(first + words_per_64) << (64 - shift));
}

// Calls f(word_index, mask) for each word overlapping columns [begin, end); mask selects
// exactly the bits of those columns in that word (how ragged groups and groups smaller than a
// word are handled).
template <class Word, class F>
constexpr void for_each_word(std::size_t begin, std::size_t end, F&& f) {
    constexpr std::size_t bits = bits_of<Word>;
    for (std::size_t w = begin / bits; w * bits < end; ++w) {
        const std::size_t lo = std::max(begin, w * bits) - w * bits;
        const std::size_t hi = std::min(end, (w + 1) * bits) - w * bits;
        constexpr Word all = std::numeric_limits<Word>::max();
        const Word upper = hi == bits ? all : Word((Word{1} << hi) - 1);
        const Word lower = Word(all << lo);
        f(w, Word(upper & lower));
    }
}

// Columns [begin, end) of a packed row as +1 / -1 values: signs[j - begin] = b_j.
template <class Word, class T>
void decode_signs(std::span<const Word> row, std::size_t begin, std::size_t end, std::span<T> signs) noexcept {
    // Arithmetic rather than a branch: the bits are random, a branch would mispredict half the time.
    for (std::size_t j = begin; j < end; ++j) {
        const auto bit = int(Word(row[j / bits_of<Word>] >> (j % bits_of<Word>)) & 1);
        signs[j - begin] = T(2 * bit - 1);
    }
}

}  // namespace multibool
