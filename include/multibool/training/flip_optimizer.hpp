#pragma once
// The FlipOptimizer concept (docs/METHOD.md §5): the B step of Boolean training. The backward pass forms
// the weight gradient Gr = dL/dW_hat tile by tile (rows [first_row, first_row + tile.rows()),
// all columns) and hands each tile to the optimizer at once, which flips bits whose first-order
// loss change dL_kij = -2 * alpha_k[i,g] * b_kij * Gr_ij it judges worth taking. Only bits,
// scales and (for some policies) a small per-weight accumulator persist: never a float W.
//
// Protocol of one step: begin_step(context); apply(...) on every row tile, possibly from several
// threads at once for disjoint row ranges (a policy's apply touches only the bits and state of
// its rows); end_step(sum of every apply's statistics). Policies update their step-level state
// (normalizers, momentum) only in end_step, and the statistics sum exactly, so the bits a step
// produces do not depend on the tiling, the tile order or the thread count.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

// Where in training a step is: keys the counter-based randomness (with the policy's seed).
struct FlipContext {
    std::uint64_t step = 0;
    std::uint64_t layer = 0;
};

// Which of the K <= max_kernel_count kernels train. The published recipe trains only the last one: earlier
// kernels hold most of the signal and flipping them disturbs every later residual. last() is
// resolved against the matrix's K when asked, so one mask serves layers of different K.
class TrainableKernels {
public:
    static constexpr std::size_t max_kernels = max_kernel_count;

    [[nodiscard]] static constexpr TrainableKernels last() noexcept { return TrainableKernels(0, true); }
    [[nodiscard]] static constexpr TrainableKernels all() noexcept { return TrainableKernels(0xFF, false); }
    // Kernel k (0-based, k < 8); combine with |, e.g. only(0) | last().
    [[nodiscard]] static constexpr TrainableKernels only(std::size_t k) noexcept {
        return TrainableKernels(k < max_kernels ? std::uint8_t(1u << k) : std::uint8_t{0}, false);
    }
    [[nodiscard]] friend constexpr TrainableKernels operator|(TrainableKernels a, TrainableKernels b) noexcept {
        return TrainableKernels(std::uint8_t(a.mask_ | b.mask_), a.last_ || b.last_);
    }

    // Whether kernel k of a matrix with `kernels` kernels trains.
    [[nodiscard]] constexpr bool contains(std::size_t k, std::size_t kernels) const noexcept {
        return k < kernels && ((last_ && k + 1 == kernels) || (k < max_kernels && ((mask_ >> k) & 1u) != 0));
    }
    [[nodiscard]] constexpr std::size_t count(std::size_t kernels) const noexcept {
        std::size_t n = 0;
        for (std::size_t k = 0; k < kernels; ++k) n += std::size_t{contains(k, kernels)};
        return n;
    }

    friend constexpr bool operator==(TrainableKernels, TrainableKernels) noexcept = default;

private:
    constexpr TrainableKernels(std::uint8_t mask, bool last) noexcept : mask_(mask), last_(last) {}
    std::uint8_t mask_;
    bool last_;
};

// A sum of non-negative values that is exact, so tiles merged in any order give the same total
// bit for bit (a float sum would not, and step-level state computed from it would then depend on
// the tiling): fixed point with 2^-64 resolution in two words. Each value is truncated to a
// multiple of 2^-64 and clamped to 2^63; the total must stay below 2^64.
class ExactSum {
public:
    void add(double value) noexcept {
        if (!(value > 0)) return;  // zeros, negatives and NaN add nothing
        value = std::min(value, 0x1.0p63);
        const double whole = std::floor(value);
        // Scaling by a power of two is exact: a multiplication, not a (slow, out-of-line) ldexp call.
        add_parts(static_cast<std::uint64_t>(whole), static_cast<std::uint64_t>((value - whole) * 0x1.0p64));
    }
    // The same as add(double(value)), in integer arithmetic: a float is mantissa * 2^exponent, so
    // its multiple of 2^-64 is the mantissa shifted. Values it ignores take no branch, so callers
    // may add every element's gain-or-negative without mispredictions.
    void add(float value) noexcept {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
        constexpr std::uint32_t smallest_normal = 0x00800000u, clamped = (127u + 63) << 23, infinity = 0x7F800000u;
        if (bits - clamped <= infinity - clamped) {  // [2^63, +Inf]: clamped to 2^63
            add_parts(std::uint64_t{1} << 63, 0);
            return;
        }
        // Zero and subnormals truncate to 0; negatives, -0 and NaN add nothing.
        const bool counted = bits - smallest_normal < clamped - smallest_normal;
        const std::uint64_t mantissa = counted ? (bits & 0x7FFFFFu) | 0x800000u : 0;
        // value * 2^64 = mantissa * 2^shift: the exponent is biased by 127 and the mantissa holds 23 fraction bits.
        const int shift = int((bits >> 23) & 0xFFu) - 127 - 23 + 64;
        if (shift < 0) {  // below 2^-41: bits under 2^-64 truncate
            add_parts(0, shift > -24 ? mantissa >> -shift : 0);
            return;
        }
        // shift <= 103: the mantissa's 24 bits straddle the two words at most once; selects, not branches.
        const auto low = static_cast<unsigned>(shift) & 63u;
        const std::uint64_t shifted = mantissa << low;
        const std::uint64_t spill = (mantissa >> 1) >> (63u - low);  // what mantissa << low loses
        add_parts(shift < 64 ? spill : shifted, shift < 64 ? shifted : 0);
    }
    ExactSum& operator+=(const ExactSum& other) noexcept {
        add_parts(other.whole_, other.fraction_);
        return *this;
    }
    [[nodiscard]] double value() const noexcept {
        return static_cast<double>(whole_) + static_cast<double>(fraction_) * 0x1.0p-64;
    }
    friend constexpr bool operator==(const ExactSum&, const ExactSum&) noexcept = default;

private:
    void add_parts(std::uint64_t whole, std::uint64_t fraction) noexcept {
        fraction_ += fraction;
        whole_ += whole + (fraction_ < fraction ? 1 : 0);  // carry out of the fraction
    }
    std::uint64_t whole_ = 0;
    std::uint64_t fraction_ = 0;  // in units of 2^-64
};

// What a step (or one tile of it) did, per kernel; only trainable kernels are counted.
struct FlipStatistics {
    static constexpr std::size_t max_kernels = TrainableKernels::max_kernels;

    std::array<std::size_t, max_kernels> kernel_bits{};        // trainable bits looked at
    std::array<std::size_t, max_kernels> kernel_candidates{};  // bits with dL < 0
    std::array<std::size_t, max_kernels> kernel_flips{};       // bits flipped
    ExactSum candidate_gain;                                   // sum of -dL over candidates
    ExactSum flip_gain;  // sum of |dL| over flipped bits (a BOLD flip may go against this step's dL)

    [[nodiscard]] std::size_t bits() const noexcept { return total(kernel_bits); }
    [[nodiscard]] std::size_t candidates() const noexcept { return total(kernel_candidates); }
    [[nodiscard]] std::size_t flips() const noexcept { return total(kernel_flips); }
    // Flipped over trainable bits looked at.
    [[nodiscard]] double flip_rate() const noexcept { return ratio(double(flips()), bits()); }
    [[nodiscard]] double mean_flip_gain() const noexcept { return ratio(flip_gain.value(), flips()); }
    [[nodiscard]] double mean_candidate_gain() const noexcept { return ratio(candidate_gain.value(), candidates()); }

    FlipStatistics& operator+=(const FlipStatistics& other) noexcept {
        for (std::size_t k = 0; k < max_kernels; ++k) {
            kernel_bits[k] += other.kernel_bits[k];
            kernel_candidates[k] += other.kernel_candidates[k];
            kernel_flips[k] += other.kernel_flips[k];
        }
        candidate_gain += other.candidate_gain;
        flip_gain += other.flip_gain;
        return *this;
    }
    friend bool operator==(const FlipStatistics&, const FlipStatistics&) noexcept = default;

private:
    static std::size_t total(const std::array<std::size_t, max_kernels>& counts) noexcept {
        std::size_t sum = 0;
        for (const std::size_t c : counts) sum += c;
        return sum;
    }
    static double ratio(double numerator, std::size_t count) noexcept {
        return count == 0 ? 0.0 : numerator / double(count);
    }
};

// dL of flipping a bit (bit set = +1) under scale alpha where dL/dW_hat = gradient. The rounded
// product keeps the exact product's sign (or underflows to 0), so "dL < 0" decisions are exact.
[[nodiscard]] constexpr float flip_loss_change(float alpha, bool bit, float gradient) noexcept {
    const float change = -2.0f * alpha * gradient;
    return bit ? change : -change;
}

// For up to 64 columns of one plane row (bit b of `bits` is column b's, `gradient` their Gr):
// writes each column's -dL (flip_loss_change's value, negated) to gains[b], adds the candidates
// (dL < 0) to `candidates` and their -dL to `gain`. Bits and candidates are random, so nothing
// branches on them: a clear bit XORs the sign of dL, and the sum ignores -dL <= 0 by itself.
inline void flip_gains(float alpha, std::uint64_t bits, const float* gradient, std::size_t count, float* gains,
                       std::size_t& candidates, ExactSum& gain) noexcept {
    const float set_bit_scale = 2.0f * alpha;  // -dL of flipping a set bit, per unit of Gr
    for (std::size_t b = 0; b < count; ++b) {
        const auto clear = static_cast<std::uint32_t>(~bits >> b & 1u) << 31;
        const float g = std::bit_cast<float>(std::bit_cast<std::uint32_t>(set_bit_scale * gradient[b]) ^ clear);
        gains[b] = g;
        candidates += std::size_t{g > 0};
        gain.add(g);
    }
}

// Throws unless the tile is rows [first_row, first_row + tile.rows()) by all columns of m.
template <BitPlaneStorage M>
void check_gradient_tile(const M& m, std::size_t first_row, MatrixView<const float> tile, const char* who) {
    if (tile.cols() != m.cols() || first_row > m.rows() || tile.rows() > m.rows() - first_row) {
        throw std::invalid_argument(std::string(who) + ": gradient tile of " + std::to_string(tile.rows()) + "x" +
                                    std::to_string(tile.cols()) + " at row " + std::to_string(first_row) +
                                    " does not fit a " + std::to_string(m.rows()) + "x" + std::to_string(m.cols()) +
                                    " matrix");
    }
}

template <class O, class M>
concept FlipOptimizer = BitPlaneStorage<M> &&
    requires(O& optimizer, const O& const_optimizer, M& m, std::size_t index, MatrixView<const float> gradient_tile,
             FlipContext context, const FlipStatistics& total) {
    m.flip(index, index, index);  // kernel, row, column
    optimizer.begin_step(context);
    { optimizer.apply(m, index, gradient_tile) } -> std::same_as<FlipStatistics>;
    optimizer.end_step(total);
    // Persistent optimizer state over the matrix's rows * cols weights (bits and scales excluded).
    { const_optimizer.state_bytes_per_weight() } -> std::convertible_to<double>;
};

}  // namespace multibool
