#pragma once
// Helpers shared by every product: which words of a packed row cover a column range, and
// how values pack into the same bit layout as the weight planes.
#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>

namespace multibool {

template <class Word>
inline constexpr std::size_t bits_of = std::numeric_limits<Word>::digits;

template <class Word>
constexpr std::size_t words_for_columns(std::size_t cols) noexcept {
    return (cols + bits_of<Word> - 1) / bits_of<Word>;
}

// Calls f(word_index, mask) for each word overlapping columns [begin, end); mask selects
// exactly the bits of those columns in that word.
template <class Word, class F>
constexpr void for_each_word(std::size_t begin, std::size_t end, F&& f) {
    constexpr std::size_t bits = bits_of<Word>;
    for (std::size_t w = begin / bits; w * bits < end; ++w) {
        const std::size_t lo = std::max(begin, w * bits) - w * bits;
        const std::size_t hi = std::min(end, (w + 1) * bits) - w * bits;
        const Word upper = hi == bits ? Word(~Word{0}) : Word((Word{1} << hi) - 1);
        const Word lower = Word(~Word{0} << lo);
        f(w, Word(upper & lower));
    }
}

inline void check_length(const char* what, const char* name, std::size_t expected, std::size_t found) {
    if (expected != found) {
        throw std::invalid_argument(std::string(what) + ": " + name + " has " + std::to_string(found) +
                                    " elements, expected " + std::to_string(expected));
    }
}

}  // namespace multibool
