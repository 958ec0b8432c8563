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

// A uniform double in [0, 1) for the tuple. Each coordinate x is absorbed as
// h <- mix(h + (x + 1) * gamma), so for a fixed prefix the draws along the next coordinate are
// exactly SplitMix64's output stream seeded with the prefix's hash: a generator that passes
// BigCrush, far more than comparing a few billion draws against flip probabilities needs.
// Distinct last coordinates never collide (mix is a bijection); distinct prefixes share a hash
// with probability about 2^-64. Not cryptographic, and it need not be.
[[nodiscard]] constexpr double counter_uniform(std::uint64_t seed, std::uint64_t step, std::uint64_t layer,
                                               std::uint64_t kernel, std::uint64_t row, std::uint64_t column) noexcept {
    constexpr std::uint64_t gamma = 0x9E3779B97F4A7C15ull;  // SplitMix64's Weyl increment (odd)
    std::uint64_t h = seed;
    for (const std::uint64_t x : {step, layer, kernel, row, column}) h = splitmix64_mix(h + (x + 1) * gamma);
    return static_cast<double>(h >> 11) * 0x1.0p-53;  // the top 53 bits: every value exact in double
}

}  // namespace multibool
