#pragma once
// Counter-based randomness for the flip policies (docs/METHOD.md §5): every draw is a pure function of
// (seed, step, layer, kernel, row, column), so flips cannot depend on the thread count or on the
// order in which gradient tiles arrive.
#include <cstdint>
#include <initializer_list>

namespace multibool {

// SplitMix64's output function (Stafford's "Mix13"): a bijection of 64 bits with full avalanche.
[[nodiscard]] constexpr std::uint64_t splitmix64_mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

namespace detail {
inline constexpr std::uint64_t counter_gamma = 0x9E3779B97F4A7C15ull;  // SplitMix64's Weyl increment (odd)
[[nodiscard]] constexpr std::uint64_t counter_absorb(std::uint64_t h, std::uint64_t x) noexcept {
    return splitmix64_mix(h + (x + 1) * counter_gamma);
}
}  // namespace detail

// The hash of a draw's coordinates but the last, shared by a whole row's draws.
[[nodiscard]] constexpr std::uint64_t counter_row_hash(std::uint64_t seed, std::uint64_t step, std::uint64_t layer,
                                                       std::uint64_t kernel, std::uint64_t row) noexcept {
    std::uint64_t h = seed;
    for (const std::uint64_t x : {step, layer, kernel, row}) h = detail::counter_absorb(h, x);
    return h;
}

// counter_uniform(seed, step, layer, kernel, row, column) from the row's hash: one mix per draw.
[[nodiscard]] constexpr double counter_uniform_in_row(std::uint64_t row_hash, std::uint64_t column) noexcept {
    return static_cast<double>(detail::counter_absorb(row_hash, column) >> 11) *
           0x1.0p-53;  // the top 53 bits: every value exact in double
}

// A uniform double in [0, 1) for the tuple. Each coordinate x is absorbed as
// h <- mix(h + (x + 1) * gamma), so for a fixed prefix the draws along the next coordinate are
// exactly SplitMix64's output stream seeded with the prefix's hash: a generator that passes
// BigCrush, far more than comparing a few billion draws against flip probabilities needs.
// Distinct last coordinates never collide (mix is a bijection); distinct prefixes share a hash
// with probability about 2^-64. Not cryptographic, and it need not be.
[[nodiscard]] constexpr double counter_uniform(std::uint64_t seed, std::uint64_t step, std::uint64_t layer,
                                               std::uint64_t kernel, std::uint64_t row, std::uint64_t column) noexcept {
    return counter_uniform_in_row(counter_row_hash(seed, step, layer, kernel, row), column);
}

}  // namespace multibool
