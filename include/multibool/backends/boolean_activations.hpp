#pragma once
// A ±1 activation vector packed like a weight plane (bit 1 = +1), for XNOR+popcount products.
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/packed_bits.hpp"

namespace multibool {

template <class Word>
class BooleanActivations {
public:
    BooleanActivations() = default;

    // sign(x) with sign(0) = +1, as for the weights.
    static BooleanActivations binarize(std::span<const float> x) {
        BooleanActivations b;
        b.size_ = x.size();
        b.bits_.assign(words_for_columns<Word>(x.size()), Word{0});
        for (std::size_t j = 0; j < x.size(); ++j) {
            if (std::isnan(x[j])) {
                throw std::invalid_argument("BooleanActivations::binarize: element " + std::to_string(j) + " is NaN");
            }
            if (x[j] >= 0.0f) set_column(std::span<Word>(b.bits_), j, true);
        }
        return b;
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::span<const Word> words() const noexcept { return bits_; }
    [[nodiscard]] int sign(std::size_t j) const noexcept { return column_is_set(words(), j) ? 1 : -1; }

private:
    std::size_t size_ = 0;
    std::vector<Word> bits_;
};

}  // namespace multibool
