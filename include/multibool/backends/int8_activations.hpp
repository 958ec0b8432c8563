#pragma once
// An activation vector quantized to int8 with one scale (x ~ scale * u), stored as the 8
// two's-complement bit-planes of u in the weight planes' packing, for bit-serial products
// (docs/METHOD.md §2): sum_j b_j u_j = sum_t c_t * (popcount(u_t & b) - popcount(u_t & ~b)),
// with c_t = 2^t for t < 7 and c_7 = -128.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/packed_bits.hpp"

namespace multibool {

// The largest level of every symmetric int8 code in the library (activations, lookup tables, BOLD's
// int8 accumulator): levels span [-127, 127], so negating one never overflows.
inline constexpr int int8_max_level = 127;

template <class Word>
class Int8Activations {
public:
    static constexpr std::size_t planes = 8;
    static constexpr std::array<int, planes> plane_weight{1, 2, 4, 8, 16, 32, 64, -128};

    Int8Activations() = default;

    // Symmetric per-vector quantization: scale = max|x| / 127, u = round(x / scale).
    static Int8Activations quantize(std::span<const float> x) {
        float max_abs = 0.0f;
        for (std::size_t j = 0; j < x.size(); ++j) {
            if (!std::isfinite(x[j])) {
                throw std::invalid_argument("Int8Activations::quantize: element " + std::to_string(j) + " is " +
                                            std::to_string(x[j]) + ", not a finite number");
            }
            max_abs = std::max(max_abs, std::fabs(x[j]));
        }
        Int8Activations q;
        q.size_ = x.size();
        q.scale_ = max_abs / float(int8_max_level);
        q.bits_.assign(planes * words_for_columns<Word>(x.size()), Word{0});
        for (std::size_t j = 0; j < x.size(); ++j) {
            const long u = q.scale_ == 0.0f ? 0 : std::lround(x[j] / q.scale_);
            q.set_value(j, static_cast<std::int8_t>(std::clamp(u, -long{int8_max_level}, long{int8_max_level})));
        }
        return q;
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] float scale() const noexcept { return scale_; }
    // Bit-plane t of u, one bit per element, in the weight planes' word layout.
    [[nodiscard]] std::span<const Word> plane(std::size_t t) const noexcept {
        const std::size_t words = words_for_columns<Word>(size_);
        return std::span<const Word>(bits_).subspan(t * words, words);
    }
    [[nodiscard]] std::int8_t value(std::size_t j) const noexcept {
        int u = 0;
        for (std::size_t t = 0; t < planes; ++t) {
            if (column_is_set(plane(t), j)) u += plane_weight[t];
        }
        return static_cast<std::int8_t>(u);
    }

private:
    void set_value(std::size_t j, std::int8_t u) noexcept {
        const auto byte = static_cast<std::uint8_t>(u);
        const std::size_t words = words_for_columns<Word>(size_);
        for (std::size_t t = 0; t < planes; ++t) {
            if ((byte >> t) & 1u) set_column(std::span<Word>(bits_).subspan(t * words, words), j, true);
        }
    }

    std::size_t size_ = 0;
    float scale_ = 0.0f;
    std::vector<Word> bits_;
};

}  // namespace multibool
