#pragma once
// The round-to-nearest baseline (llama.cpp Q4_1 / GPTQ-RTN style) that Boolean kernels are
// compared against at equal storage: asymmetric b-bit codes q with one fp16 (scale, minimum)
// pair per group of G columns of a row, w_hat = minimum + q * scale, q in [0, 2^b - 1].
// For accuracy comparisons only: it dequantizes, it has no fast kernel.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/group_size.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

namespace detail {

// What the code baselines (RTN, GPTQ) share: the dense row-major copy of a matrix that has
// rows(), cols() and weight(i, j), and the bytes of b-bit codes packed once plus two 16-bit
// values per group (RTN's scale and minimum, GPTQ's scale and zero).
template <class Codes>
std::vector<float> dequantize_codes(const Codes& m) {
    std::vector<float> dense(m.rows() * m.cols());
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t j = 0; j < m.cols(); ++j) dense[i * m.cols() + j] = m.weight(i, j);
    }
    return dense;
}
inline std::size_t grouped_code_bytes(std::size_t bits, std::size_t rows, std::size_t cols,
                                      std::size_t groups_per_row) noexcept {
    return (bits * rows * cols + 7) / 8 + 2 * sizeof(half) * rows * groups_per_row;
}

}  // namespace detail

class RoundToNearestMatrix {
public:
    RoundToNearestMatrix() = default;

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t bits() const noexcept { return bits_; }
    // Columns per group; the last group of a row may be shorter.
    [[nodiscard]] std::size_t group_size() const noexcept { return group_size_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_per_row_; }
    [[nodiscard]] std::size_t group_begin(std::size_t g) const noexcept { return g * group_size_; }
    [[nodiscard]] std::size_t group_end(std::size_t g) const noexcept { return std::min(cols_, (g + 1) * group_size_); }
    [[nodiscard]] std::size_t levels() const noexcept { return std::size_t{1} << bits_; }

    [[nodiscard]] unsigned code(std::size_t i, std::size_t j) const noexcept { return codes_[i * cols_ + j]; }
    [[nodiscard]] half scale(std::size_t i, std::size_t g) const noexcept { return scales_[i * groups_per_row_ + g]; }
    [[nodiscard]] half minimum(std::size_t i, std::size_t g) const noexcept {
        return minimums_[i * groups_per_row_ + g];
    }
    // Level q of group g of row i: minimum + q * scale, exact in double (two 11-bit significands
    // and an 8-bit q), then rounded once to float.
    [[nodiscard]] float level(std::size_t i, std::size_t g, unsigned q) const noexcept {
        return static_cast<float>(static_cast<double>(minimum(i, g)) + q * static_cast<double>(scale(i, g)));
    }
    [[nodiscard]] float weight(std::size_t i, std::size_t j) const noexcept {
        return level(i, j / group_size_, code(i, j));
    }
    // Dense row-major rows x cols copy of W_hat.
    [[nodiscard]] std::vector<float> dequantize() const { return detail::dequantize_codes(*this); }

    // A deployment layout's bytes: the codes packed at b bits each (rounded up to a whole byte
    // once), and two fp16 values per group.
    [[nodiscard]] std::size_t storage_bytes() const noexcept {
        return detail::grouped_code_bytes(bits_, rows_, cols_, groups_per_row_);
    }
    // Exactly (b * cols + 2 * 16 * groups_per_row) / cols: every row has the same shape.
    [[nodiscard]] double bits_per_weight() const noexcept {
        return cols_ == 0 ? 0.0 : double(bits_ * cols_ + 2 * 16 * groups_per_row_) / double(cols_);
    }

private:
    friend RoundToNearestMatrix round_to_nearest(MatrixView<const float>, std::size_t, std::size_t);

    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::size_t bits_ = 0;
    std::size_t group_size_ = 0;
    std::size_t groups_per_row_ = 0;
    std::vector<std::uint8_t> codes_;  // row-major, one per weight
    std::vector<half> scales_;         // row-major, one per (row, group)
    std::vector<half> minimums_;
};

// Quantizes weights to bits (1..8) per weight with group_size columns per group (per_row: one
// group per row). The scale is derived from the fp16-rounded minimum, so the grid is the one
// storage gives: scale = max(0, max - minimum) / (2^b - 1). A group of one value gets scale 0
// when fp16 holds that value, else a tiny scale that wins back part of the minimum's rounding.
inline RoundToNearestMatrix round_to_nearest(MatrixView<const float> weights, std::size_t bits,
                                             std::size_t group_size) {
    if (bits < 1 || bits > 8) {
        throw std::invalid_argument("round_to_nearest: bits must be 1 to 8, got " + std::to_string(bits));
    }
    const std::string shape = std::to_string(weights.rows()) + "x" + std::to_string(weights.cols());
    RoundToNearestMatrix m;
    m.rows_ = weights.rows();
    m.cols_ = weights.cols();
    m.bits_ = bits;
    m.group_size_ = group_size == per_row ? std::max<std::size_t>(m.cols_, 1) : group_size;
    m.groups_per_row_ = group_count(m.cols_, m.group_size_);
    m.codes_.resize(m.rows_ * m.cols_);
    m.scales_.resize(m.rows_ * m.groups_per_row_);
    m.minimums_.resize(m.rows_ * m.groups_per_row_);
    const unsigned top = (1u << bits) - 1;
    for (std::size_t i = 0; i < m.rows_; ++i) {
        for (std::size_t g = 0; g < m.groups_per_row_; ++g) {
            float low = std::numeric_limits<float>::infinity();
            float high = -std::numeric_limits<float>::infinity();
            for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                const float w = weights(i, j);
                if (!std::isfinite(w)) {
                    throw std::invalid_argument("round_to_nearest: weight at row " + std::to_string(i) + " col " +
                                                std::to_string(j) + " of a " + shape + " matrix is " +
                                                std::to_string(w) + ", not a finite number");
                }
                low = std::min(low, w);
                high = std::max(high, w);
            }
            const half minimum(low);
            const half scale(std::max(0.0, (double(high) - static_cast<double>(minimum)) / top));
            if (!is_finite(minimum) || !is_finite(scale)) {
                throw std::invalid_argument("round_to_nearest: row " + std::to_string(i) + " group " +
                                            std::to_string(g) + " of a " + shape + " matrix spans [" +
                                            std::to_string(low) + ", " + std::to_string(high) +
                                            "], beyond what fp16 minimums and scales hold");
            }
            m.minimums_[i * m.groups_per_row_ + g] = minimum;
            m.scales_[i * m.groups_per_row_ + g] = scale;
            if (static_cast<double>(scale) == 0.0) continue;  // every code stays 0: the minimum
            for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                const double w = weights(i, j);
                const double t = (w - static_cast<double>(minimum)) / static_cast<double>(scale);
                auto q = static_cast<unsigned>(std::nearbyint(std::clamp(t, 0.0, double(top))));
                // Levels are rounded to float, which can move a midpoint by an ulp: keep the code
                // whose level, as dequantize() gives it, is nearest.
                auto distance = [&](unsigned c) { return std::fabs(w - double(m.level(i, g, c))); };
                if (q > 0 && distance(q - 1) < distance(q)) --q;
                if (q < top && distance(q + 1) < distance(q)) ++q;
                m.codes_[i * m.cols_ + j] = static_cast<std::uint8_t>(q);
            }
        }
    }
    return m;
}

}  // namespace multibool
