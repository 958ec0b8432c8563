#pragma once
// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", ICLR 2023), the post-training baseline low-bit methods are compared with.
// Asymmetric b-bit codes with one fp16 scale and one integer zero per group of G columns of a row,
// w_hat = scale * (q - zero). Columns are quantized left to right; each column's error, divided
// by the diagonal of U, is spread over the columns not yet quantized through row j of U, the upper
// Cholesky factor of H^-1 (H = E[x x^T] of the layer's inputs plus a damping of 1 % of its mean
// diagonal, as the paper's reference code). A group's grid is chosen when its first column is
// reached, from the weights as the earlier errors left them; no act-order. Rows are independent.
// For accuracy comparisons only: it dequantizes, it has no fast kernel.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/round_to_nearest.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool {

struct GptqOptions {
    std::size_t bits = 4;         // 1..8
    std::size_t group_size = 64;  // columns per (scale, zero); the last group of a row may be shorter
    double damping = 0.01;        // added to H's diagonal, as a fraction of its mean diagonal
};

// One group's grid: levels scale * (q - zero) for q in 0 .. 2^b - 1.
struct GptqGrid {
    half scale;
    unsigned zero = 0;

    // The reference code's quantizer: the range [min(w, 0), max(w, 0)] (or [-1, 1] when every w
    // is 0) over 2^b - 1 steps, the scale rounded to fp16 as stored, the zero the nearest integer.
    static GptqGrid of(std::span<const double> w, std::size_t bits) {
        const unsigned top = (1u << bits) - 1;
        double low = 0.0, high = 0.0;
        for (double v : w) {
            low = std::min(low, v);
            high = std::max(high, v);
        }
        if (low == 0.0 && high == 0.0) {
            low = -1.0;
            high = 1.0;
        }
        GptqGrid grid;
        grid.scale = half((high - low) / top);
        const double step = static_cast<double>(grid.scale);
        if (!(step > 0) || !is_finite(grid.scale)) {
            throw std::invalid_argument("GPTQ: a group spans [" + std::to_string(low) + ", " + std::to_string(high) +
                                        "], which an fp16 scale cannot step over in " + std::to_string(top) + " steps");
        }
        grid.zero = static_cast<unsigned>(std::clamp(std::nearbyint(-low / step), 0.0, double(top)));
        return grid;
    }
    [[nodiscard]] unsigned code(double w, std::size_t bits) const noexcept {
        const double top = double((1u << bits) - 1);
        return static_cast<unsigned>(
            std::clamp(std::nearbyint(w / static_cast<double>(scale)) + double(zero), 0.0, top));
    }
    [[nodiscard]] double level(unsigned q) const noexcept {
        return static_cast<double>(scale) * (double(q) - double(zero));
    }
};

class GptqMatrix {
public:
    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t bits() const noexcept { return bits_; }
    [[nodiscard]] std::size_t group_size() const noexcept { return group_size_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_per_row_; }

    [[nodiscard]] unsigned code(std::size_t i, std::size_t j) const noexcept { return codes_[i * cols_ + j]; }
    [[nodiscard]] const GptqGrid& grid(std::size_t i, std::size_t g) const noexcept {
        return grids_[i * groups_per_row_ + g];
    }
    [[nodiscard]] float weight(std::size_t i, std::size_t j) const noexcept {
        return static_cast<float>(grid(i, j / group_size_).level(code(i, j)));
    }
    [[nodiscard]] std::vector<float> dequantize() const { return detail::dequantize_codes(*this); }
    // Codes packed at b bits, and per group an fp16 scale and the zero counted at 16 bits (the
    // usual GPTQ accounting: 4-bit codes at G = 64 are 4.5 bits per weight).
    [[nodiscard]] std::size_t storage_bytes() const noexcept {
        return detail::grouped_code_bytes(bits_, rows_, cols_, groups_per_row_);
    }

private:
    friend GptqMatrix gptq(MatrixView<const float>, std::span<const double>, const GptqOptions&);

    std::size_t rows_ = 0, cols_ = 0, bits_ = 0, group_size_ = 0, groups_per_row_ = 0;
    std::vector<std::uint8_t> codes_;
    std::vector<GptqGrid> grids_;
};

namespace detail {

// Lower Cholesky factor of the n x n symmetric positive definite a (row-major), in place; the
// upper triangle is left as it was. Throws naming `who` when a pivot is not positive.
inline void cholesky_lower(std::span<double> a, std::size_t n, const std::string& who) {
    for (std::size_t j = 0; j < n; ++j) {
        double d = a[j * n + j];
        for (std::size_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0)) throw std::invalid_argument(who + ": the damped Hessian is not positive definite");
        d = std::sqrt(d);
        a[j * n + j] = d;
        for (std::size_t i = j + 1; i < n; ++i) {
            double s = a[i * n + j];
            for (std::size_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / d;
        }
    }
}

// U with H^-1 = U^T U (upper triangular, row-major) for the damped H.
inline std::vector<double> gptq_inverse_factor(std::vector<double> h, std::size_t n, const std::string& who) {
    cholesky_lower(h, n, who);  // H = L L^T
    // L^-1 by forward substitution, column by column; then H^-1 = L^-T L^-1.
    std::vector<double> inverse_l(n * n, 0.0);
    for (std::size_t c = 0; c < n; ++c) {
        inverse_l[c * n + c] = 1.0 / h[c * n + c];
        for (std::size_t i = c + 1; i < n; ++i) {
            double s = 0.0;
            for (std::size_t k = c; k < i; ++k) s += h[i * n + k] * inverse_l[k * n + c];
            inverse_l[i * n + c] = -s / h[i * n + i];
        }
    }
    std::vector<double> inverse(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j <= i; ++j) {
            double s = 0.0;
            for (std::size_t k = i; k < n; ++k) s += inverse_l[k * n + i] * inverse_l[k * n + j];
            inverse[i * n + j] = inverse[j * n + i] = s;
        }
    }
    cholesky_lower(inverse, n, who);  // H^-1 = M M^T, so U = M^T
    std::vector<double> upper(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j <= i; ++j) upper[j * n + i] = inverse[i * n + j];
    }
    return upper;
}

// U of the damped H for a weights matrix of `shape` (`who` and the shape name the errors): inputs that never vary
// (H_jj = 0) get H_jj = 1 and are marked dead, then `damping` times the mean diagonal is added to
// the diagonal, as in the reference code.
struct DampedInverseFactor {
    std::vector<double> upper;
    std::vector<bool> dead;
};

inline DampedInverseFactor damped_inverse_factor(std::span<const double> h, std::size_t n, double damping,
                                                 const std::string& who, const std::string& shape) {
    if (!(damping >= 0) || !std::isfinite(damping)) {
        throw std::invalid_argument(who + ": the damping must be a finite number >= 0");
    }
    std::vector<double> damped(h.begin(), h.end());
    std::vector<bool> dead(n, false);
    double mean_diagonal = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
        for (std::size_t k = 0; k < n; ++k) {
            if (!std::isfinite(damped[j * n + k])) {
                throw std::invalid_argument(who + ": the Hessian of a " + shape + " matrix holds " +
                                            std::to_string(damped[j * n + k]) + " at (" + std::to_string(j) + ", " +
                                            std::to_string(k) + ")");
            }
        }
        if (damped[j * n + j] == 0) {
            dead[j] = true;
            damped[j * n + j] = 1.0;
        }
        mean_diagonal += damped[j * n + j];
    }
    mean_diagonal /= double(std::max<std::size_t>(n, 1));
    for (std::size_t j = 0; j < n; ++j) damped[j * n + j] += damping * mean_diagonal;
    return {gptq_inverse_factor(std::move(damped), n, who), std::move(dead)};
}

}  // namespace detail

// Quantizes weights (rows x cols) under h, the cols x cols second moment of the inputs
// (row-major, SecondMoment::dense()). Inputs that never vary (H_jj = 0) get H_jj = 1 and their
// weights are set to 0 first, as in the reference code. Throws on non-finite weights or h, bits
// outside 1..8, a group size of 0 or a shape mismatch.
inline GptqMatrix gptq(MatrixView<const float> weights, std::span<const double> h, const GptqOptions& options) {
    const std::size_t rows = weights.rows(), n = weights.cols();
    const std::string shape = std::to_string(rows) + "x" + std::to_string(n);
    if (options.bits < 1 || options.bits > 8 || options.group_size == 0) {
        throw std::invalid_argument("GPTQ: bits must be 1 to 8 and the group size at least 1, got " +
                                    std::to_string(options.bits) + " and " + std::to_string(options.group_size));
    }
    if (h.size() != n * n) {
        throw std::invalid_argument("GPTQ: a " + shape + " matrix needs a " + std::to_string(n) + "x" +
                                    std::to_string(n) + " Hessian, got " + std::to_string(h.size()) + " values");
    }
    const detail::DampedInverseFactor factor = detail::damped_inverse_factor(h, n, options.damping, "GPTQ", shape);
    const std::vector<double>& upper = factor.upper;
    const std::vector<bool>& dead = factor.dead;

    GptqMatrix m;
    m.rows_ = rows;
    m.cols_ = n;
    m.bits_ = options.bits;
    m.group_size_ = options.group_size;
    m.groups_per_row_ = group_count(n, options.group_size);
    m.codes_.resize(rows * n);
    m.grids_.resize(rows * m.groups_per_row_);
    std::vector<double> w(n);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const float v = weights(i, j);
            if (!std::isfinite(v)) {
                throw std::invalid_argument("GPTQ: weight at row " + std::to_string(i) + " col " + std::to_string(j) +
                                            " of a " + shape + " matrix is " + std::to_string(v) +
                                            ", not a finite number");
            }
            w[j] = dead[j] ? 0.0 : double(v);
        }
        GptqGrid grid;
        for (std::size_t j = 0; j < n; ++j) {
            if (j % options.group_size == 0) {
                const std::size_t end = std::min(n, j + options.group_size);
                grid = GptqGrid::of(std::span<const double>(w).subspan(j, end - j), options.bits);
                m.grids_[i * m.groups_per_row_ + j / options.group_size] = grid;
            }
            const unsigned q = grid.code(w[j], options.bits);
            m.codes_[i * n + j] = static_cast<std::uint8_t>(q);
            const double error = (w[j] - grid.level(q)) / upper[j * n + j];
            for (std::size_t k = j + 1; k < n; ++k) w[k] -= error * upper[j * n + k];
        }
    }
    return m;
}

}  // namespace multibool
