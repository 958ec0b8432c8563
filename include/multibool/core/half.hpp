#pragma once
// 16-bit floating-point storage types for scales (docs/METHOD.md §6: fp16/bf16 for deployment):
// multibool::half (IEEE binary16) and multibool::bfloat16, the ScaleType concept that names every
// type a BitPlaneMatrix may store its scales in, and is_finite for all of them.
// The conversions are portable bit manipulation, correctly rounded (to nearest, ties to even),
// so that files and results do not depend on whether the CPU has F16C (the row conversions
// below use it, and round alike).
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace multibool {

// A value stored as sign | ExponentBits | MantissaBits in 16 bits, with IEEE semantics
// (subnormals, infinities, NaN). Arithmetic goes through float, which holds every value exactly.
template <int ExponentBits, int MantissaBits>
class Float16 {
    static_assert(1 + ExponentBits + MantissaBits == 16, "Float16: sign, exponent and mantissa must fill 16 bits");

public:
    static constexpr int exponent_bits = ExponentBits;
    static constexpr int mantissa_bits = MantissaBits;

    constexpr Float16() noexcept = default;
    // Rounds to nearest, ties to even, straight from the value (no double rounding through an
    // intermediate type); beyond the largest finite value gives infinity, NaN stays NaN.
    template <class T>
        requires std::is_arithmetic_v<T>
    constexpr explicit Float16(T value) noexcept : bits_(round_from_double(static_cast<double>(value))) {}

    [[nodiscard]] static constexpr Float16 from_bits(std::uint16_t bits) noexcept {
        Float16 f;
        f.bits_ = bits;
        return f;
    }
    [[nodiscard]] constexpr std::uint16_t bits() const noexcept { return bits_; }

    // Exact: float (and double) hold every 16-bit value.
    constexpr explicit operator float() const noexcept { return static_cast<float>(to_double()); }
    constexpr explicit operator double() const noexcept { return to_double(); }

    [[nodiscard]] constexpr bool is_finite() const noexcept { return (bits_ & exponent_mask) != exponent_mask; }

    // IEEE comparison: NaN equals nothing, +0 equals -0.
    friend constexpr bool operator==(Float16 a, Float16 b) noexcept { return a.to_double() == b.to_double(); }

private:
    static constexpr int bias = (1 << (ExponentBits - 1)) - 1;
    static constexpr std::uint16_t sign_mask = 0x8000;
    static constexpr std::uint16_t exponent_mask = ((1u << ExponentBits) - 1) << MantissaBits;
    static constexpr std::uint16_t mantissa_mask = (1u << MantissaBits) - 1;
    static constexpr std::uint16_t quiet_bit = 1u << (MantissaBits - 1);
    static constexpr int double_mantissa_bits = 52;
    static constexpr int double_bias = 1023;
    static constexpr std::uint64_t double_mantissa_mask = (std::uint64_t{1} << double_mantissa_bits) - 1;

    [[nodiscard]] constexpr double to_double() const noexcept {
        const std::uint64_t sign = std::uint64_t(bits_ & sign_mask) << 48;
        const int exponent = (bits_ & exponent_mask) >> MantissaBits;
        const std::uint64_t mantissa = bits_ & mantissa_mask;
        constexpr int widen = double_mantissa_bits - MantissaBits;
        if (exponent == (1 << ExponentBits) - 1) {  // infinity, or NaN with its payload kept
            return std::bit_cast<double>(sign | (std::uint64_t{0x7FF} << 52) | (mantissa << widen));
        }
        if (exponent == 0) {
            if (mantissa == 0) return std::bit_cast<double>(sign);
            // Subnormal: mantissa * 2^(1 - bias - MantissaBits), normal in double.
            const auto leading = static_cast<int>(std::bit_width(mantissa)) - 1;
            const auto double_exponent = std::uint64_t(leading + 1 - bias - MantissaBits + double_bias);
            const std::uint64_t fraction = (mantissa << (double_mantissa_bits - leading)) & double_mantissa_mask;
            return std::bit_cast<double>(sign | (double_exponent << 52) | fraction);
        }
        const auto double_exponent = std::uint64_t(exponent - bias + double_bias);
        return std::bit_cast<double>(sign | (double_exponent << 52) | (mantissa << widen));
    }

    [[nodiscard]] static constexpr std::uint16_t round_from_double(double value) noexcept {
        const auto bits = std::bit_cast<std::uint64_t>(value);
        const auto sign = static_cast<std::uint16_t>((bits >> 48) & sign_mask);
        const std::uint64_t magnitude = bits & ~(std::uint64_t{1} << 63);
        const auto double_exponent = static_cast<int>(magnitude >> 52);
        const std::uint64_t fraction = magnitude & double_mantissa_mask;
        if (double_exponent == 0x7FF) {
            if (fraction == 0) return infinity(sign);
            // NaN: keep the payload's top bits, quiet it as IEEE conversions do (never turns into inf).
            return static_cast<std::uint16_t>(infinity(sign) | quiet_bit |
                                              (fraction >> (double_mantissa_bits - MantissaBits)));
        }
        // Zeros and double subnormals are far below half the smallest subnormal of either format.
        if (double_exponent == 0) return sign;
        int exponent = double_exponent - double_bias + bias;
        if (exponent >= (1 << ExponentBits) - 1) return infinity(sign);
        // Shift the 53-bit significand down to MantissaBits + 1 bits; below the normal range,
        // further down to the subnormal spacing.
        int shift = double_mantissa_bits - MantissaBits;
        if (exponent < 1) {
            shift += 1 - exponent;
            exponent = 1;
        }
        if (shift > double_mantissa_bits + 1) return sign;  // below half the smallest subnormal
        const std::uint64_t significand = fraction | (std::uint64_t{1} << double_mantissa_bits);
        std::uint64_t rounded = significand >> shift;
        const std::uint64_t remainder = significand & ((std::uint64_t{1} << shift) - 1);
        const std::uint64_t halfway = std::uint64_t{1} << (shift - 1);
        if (remainder > halfway || (remainder == halfway && (rounded & 1) != 0)) ++rounded;
        // rounded carries the implicit bit, so a carry out of the mantissa bumps the exponent
        // (up to infinity, whose mantissa is then zero), and a subnormal may become normal.
        const std::uint64_t result = (std::uint64_t(exponent - 1) << MantissaBits) + rounded;
        return result < exponent_mask ? static_cast<std::uint16_t>(sign | result) : infinity(sign);
    }
    [[nodiscard]] static constexpr std::uint16_t infinity(std::uint16_t sign) noexcept {
        return static_cast<std::uint16_t>(sign | exponent_mask);
    }

    std::uint16_t bits_ = 0;
};

using half = Float16<5, 10>;
using bfloat16 = Float16<8, 7>;

// Rows of halves to floats and back, each element as its cast converts it. With F16C (x86), 8 at
// a time in hardware, which rounds alike for every input (tests/test_scale_types.cpp checks
// every half and a sweep of floats): BoldPolicy's fp16 accumulator converts a row each way per step.
inline void widen(std::span<const half> in, std::span<float> out) noexcept {
    std::size_t j = 0;
#if defined(__F16C__)
    for (; j + 8 <= in.size(); j += 8) {
        std::uint16_t lanes[8];
        for (std::size_t l = 0; l < 8; ++l) lanes[l] = in[j + l].bits();
        _mm256_storeu_ps(out.data() + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lanes))));
    }
#endif
    for (; j < in.size(); ++j) out[j] = static_cast<float>(in[j]);
}
inline void narrow(std::span<const float> in, std::span<half> out) noexcept {
    std::size_t j = 0;
#if defined(__F16C__)
    for (; j + 8 <= in.size(); j += 8) {
        std::uint16_t lanes[8];
        _mm_storeu_si128(
            reinterpret_cast<__m128i*>(lanes),
            _mm256_cvtps_ph(_mm256_loadu_ps(in.data() + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        for (std::size_t l = 0; l < 8; ++l) out[j + l] = half::from_bits(lanes[l]);
    }
#endif
    for (; j < in.size(); ++j) out[j] = half(in[j]);
}

// The types a BitPlaneMatrix stores scales in: float for training, fp16/bf16 for deployment.
template <class T>
concept ScaleType =
    std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, half> || std::same_as<T, bfloat16>;

// The type scales are computed in: float for the 16-bit types (exact for each value), else themselves.
template <ScaleType T>
using scale_arithmetic_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <int ExponentBits, int MantissaBits>
constexpr bool is_finite(Float16<ExponentBits, MantissaBits> value) noexcept {
    return value.is_finite();
}
template <std::floating_point T>
bool is_finite(T value) noexcept {
    return std::isfinite(value);
}

}  // namespace multibool
