#pragma once
// The one bit layout every packed row uses (weight planes and packed activations alike):
// column j is bit j % w of word j / w, w the word's width; a set bit means +1.
#include <cstddef>
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

}  // namespace multibool
