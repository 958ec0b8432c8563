#pragma once
// Which words of a packed row cover a column range, with the mask of the columns in each word.
#include <algorithm>
#include <cstddef>
#include <limits>

#include "multibool/core/packed_bits.hpp"

namespace multibool {

// Calls f(word_index, mask) for each word overlapping columns [begin, end); mask selects
// exactly the bits of those columns in that word.
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

}  // namespace multibool
