// ggml's tensor types to float against blocks written field by field here from ggml's block
// definitions and values computed by an independent scalar formula (hand-worked cases included),
// and the block geometry of every type id against ggml's type_traits table.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <multibool/core/gguf_tensor_types.hpp>

using namespace multibool::gguf;
using Catch::Matchers::Contains;

// Every block below is built by hand, field by field, from ggml's block definitions
// (ggml-common.h), and every expected value comes from the type's defining formula.
// Scales are drawn from values fp16 holds exactly, so every expected value is exact in float and
// results are compared with ==.

namespace {

using Bytes = std::vector<std::byte>;

// The fp16 pattern of a value fp16 holds exactly (normal or zero), from the IEEE definition:
// |v| = 1.mantissa · 2^(exponent − 15).
std::uint16_t fp16_bits(double v) {
    if (v == 0.0) return 0;
    int e = 0;
    const double m = std::frexp(std::fabs(v), &e);  // |v| = m · 2^e, m in [0.5, 1)
    const int exponent = e - 1 + 15;
    const double mantissa = (2.0 * m - 1.0) * 1024.0;
    REQUIRE(exponent >= 1);
    REQUIRE(exponent <= 30);
    REQUIRE(mantissa == std::floor(mantissa));
    return static_cast<std::uint16_t>((v < 0 ? 0x8000 : 0) | (exponent << 10) | static_cast<int>(mantissa));
}

// bf16 is the top half of a float's bits.
std::uint16_t bf16_bits(float v) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    REQUIRE((bits & 0xFFFF) == 0);
    return static_cast<std::uint16_t>(bits >> 16);
}

// Little-endian 16-bit field at byte `at`.
void put16(Bytes& b, std::size_t at, std::uint16_t bits) {
    b[at] = std::byte(bits & 0xFF);
    b[at + 1] = std::byte(bits >> 8);
}
// `width` bits of `value` at bit `shift` of byte `at` (fields never cross a byte).
void put_bits(Bytes& b, std::size_t at, unsigned shift, unsigned width, unsigned value) {
    REQUIRE(value < (1u << width));
    REQUIRE(shift + width <= 8);
    b[at] |= std::byte(value << shift);
}

// Scales fp16 holds exactly, with few significant bits so that scale · integer is exact in float.
double random_scale(std::mt19937_64& rng) {
    static constexpr std::array<double, 8> scales = {0.5, 0.25, -0.75, 1.5, 0.0625, 3.0, 0.015625, -0.125};
    return scales[rng() % scales.size()];
}
unsigned random_below(std::mt19937_64& rng, unsigned n) { return static_cast<unsigned>(rng() % n); }

std::vector<float> decode(TensorType type, const Bytes& data, std::size_t values) {
    // One byte in front so that the blocks are not aligned.
    Bytes shifted(data.size() + 1);
    std::memcpy(shifted.data() + 1, data.data(), data.size());
    std::vector<float> out(values);
    dequantize(type, std::span<const std::byte>(shifted).subspan(1), out);
    return out;
}

// ---- The block types, each: its geometry, random content, its bytes, and value(j) by definition.

// ggml's block_q4_0 / q4_1 / q5_0 / q5_1: fp16 d, [fp16 m], [4 bytes: bit j of the little-endian
// word is bit 4 of q_j], 16 bytes: byte j has q_j's low nibble in its low half and q_{j+16}'s in
// its high half. Without m: d·(q − 2^(Bits−1)); with m: d·q + m.
template <TensorType Type, unsigned Bits, bool WithMin>
struct LegacyBlock {
    static constexpr TensorType type = Type;
    static constexpr std::size_t values = 32;
    static constexpr std::size_t bytes = 2 + (WithMin ? 2 : 0) + (Bits == 5 ? 4 : 0) + 16;
    double d = 0, m = 0;
    std::array<unsigned, 32> q{};

    static LegacyBlock random(std::mt19937_64& rng) {
        LegacyBlock b;
        b.d = random_scale(rng);
        if (WithMin) b.m = random_scale(rng);
        for (auto& v : b.q) v = random_below(rng, 1u << Bits);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put16(b, 0, fp16_bits(d));
        std::size_t at = 2;
        if (WithMin) {
            put16(b, at, fp16_bits(m));
            at += 2;
        }
        if (Bits == 5) {
            for (std::size_t j = 0; j < 32; ++j) put_bits(b, at + j / 8, j % 8, 1, q[j] >> 4);
            at += 4;
        }
        for (std::size_t j = 0; j < 32; ++j) put_bits(b, at + j % 16, j < 16 ? 0 : 4, 4, q[j] & 0xF);
        return b;
    }
    double value(std::size_t j) const {
        if (WithMin) return d * q[j] + m;
        return d * (static_cast<int>(q[j]) - (1 << (Bits - 1)));
    }
};
using Q4_0Block = LegacyBlock<TensorType::Q4_0, 4, false>;
using Q4_1Block = LegacyBlock<TensorType::Q4_1, 4, true>;
using Q5_0Block = LegacyBlock<TensorType::Q5_0, 5, false>;
using Q5_1Block = LegacyBlock<TensorType::Q5_1, 5, true>;

// ggml's block_q8_0: fp16 d, 32 int8 q; d·q.
struct Q8_0Block {
    static constexpr TensorType type = TensorType::Q8_0;
    static constexpr std::size_t values = 32, bytes = 34;
    double d = 0;
    std::array<int, 32> q{};
    static Q8_0Block random(std::mt19937_64& rng) {
        Q8_0Block b;
        b.d = random_scale(rng);
        for (auto& v : b.q) v = static_cast<int>(random_below(rng, 256)) - 128;
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put16(b, 0, fp16_bits(d));
        for (std::size_t j = 0; j < 32; ++j) b[2 + j] = std::byte(static_cast<std::uint8_t>(q[j]));
        return b;
    }
    double value(std::size_t j) const { return d * q[j]; }
};

// ggml's block_q1_0: fp16 d, 16 bytes; weight j is bit j % 8 of byte j / 8; 1 → +d, 0 → −d.
struct Q1_0Block {
    static constexpr TensorType type = TensorType::Q1_0;
    static constexpr std::size_t values = 128, bytes = 18;
    double d = 0;
    std::array<bool, 128> positive{};
    static Q1_0Block random(std::mt19937_64& rng) {
        Q1_0Block b;
        b.d = random_scale(rng);
        for (auto&& v : b.positive) v = (rng() & 1) != 0;
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put16(b, 0, fp16_bits(d));
        for (std::size_t j = 0; j < 128; ++j) put_bits(b, 2 + j / 8, j % 8, 1, positive[j] ? 1 : 0);
        return b;
    }
    double value(std::size_t j) const { return positive[j] ? d : -d; }
};

// ggml's block_q2_0: fp16 d, 16 bytes; q_j is the 2 bits at 2·(j % 4) of byte j / 4; d·(q − 1).
struct Q2_0Block {
    static constexpr TensorType type = TensorType::Q2_0;
    static constexpr std::size_t values = 64, bytes = 18;
    double d = 0;
    std::array<unsigned, 64> q{};
    static Q2_0Block random(std::mt19937_64& rng) {
        Q2_0Block b;
        b.d = random_scale(rng);
        for (auto& v : b.q) v = random_below(rng, 4);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put16(b, 0, fp16_bits(d));
        for (std::size_t j = 0; j < 64; ++j) put_bits(b, 2 + j / 4, 2 * (j % 4), 2, q[j]);
        return b;
    }
    double value(std::size_t j) const { return d * (static_cast<int>(q[j]) - 1); }
};

// The 2-bit packing of ggml's K-quants, written as ggml's loops walk it: the 64 bytes are two
// halves of 32; in half h, byte l holds, from its low bits up, the values h·128 + l, + 32, + 64,
// + 96.
void put_two_bit_quants(Bytes& b, std::size_t at, const std::array<unsigned, 256>& q) {
    for (std::size_t h = 0; h < 2; ++h) {
        for (std::size_t field = 0; field < 4; ++field) {
            for (std::size_t l = 0; l < 32; ++l)
                put_bits(b, at + 32 * h + l, 2 * field, 2, q[128 * h + 32 * field + l]);
        }
    }
}

// ggml's block_tq2_0: 64 bytes of 2-bit q (packed as above), then fp16 d; d·(q − 1).
struct TQ2_0Block {
    static constexpr TensorType type = TensorType::TQ2_0;
    static constexpr std::size_t values = 256, bytes = 66;
    double d = 0;
    std::array<unsigned, 256> q{};
    static TQ2_0Block random(std::mt19937_64& rng) {
        TQ2_0Block b;
        b.d = random_scale(rng);
        for (auto& v : b.q) v = random_below(rng, 3);  // ternary: 0, 1, 2
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put_two_bit_quants(b, 0, q);
        put16(b, 64, fp16_bits(d));
        return b;
    }
    double value(std::size_t j) const { return d * (static_cast<int>(q[j]) - 1); }
};

// ggml's block_q2_K: 16 bytes (sub-block s of 16 values: scale in the low nibble of byte s, min in
// the high nibble), 64 bytes of 2-bit q, fp16 d, fp16 dmin; d·scale·q − dmin·min.
struct Q2_KBlock {
    static constexpr TensorType type = TensorType::Q2_K;
    static constexpr std::size_t values = 256, bytes = 84;
    double d = 0, dmin = 0;
    std::array<unsigned, 16> scale{}, min{};
    std::array<unsigned, 256> q{};
    static Q2_KBlock random(std::mt19937_64& rng) {
        Q2_KBlock b;
        b.d = random_scale(rng);
        b.dmin = random_scale(rng);
        for (std::size_t s = 0; s < 16; ++s) {
            b.scale[s] = random_below(rng, 16);
            b.min[s] = random_below(rng, 16);
        }
        for (auto& v : b.q) v = random_below(rng, 4);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        for (std::size_t s = 0; s < 16; ++s) {
            put_bits(b, s, 0, 4, scale[s]);
            put_bits(b, s, 4, 4, min[s]);
        }
        put_two_bit_quants(b, 16, q);
        put16(b, 80, fp16_bits(d));
        put16(b, 82, fp16_bits(dmin));
        return b;
    }
    double value(std::size_t j) const { return d * scale[j / 16] * q[j] - dmin * min[j / 16]; }
};

// ggml's block_q3_K: hmask[32] (value j's third bit: bit j / 32 of byte j % 32), 64 bytes of the
// low 2 bits, 12 bytes of sixteen 6-bit scales stored + 32 (low nibbles: bytes 0-7, sub-blocks 0-7
// in the low halves and 8-15 in the high halves; top 2 bits: bytes 8-11, byte 8 + s % 4 at bit
// 2·(s / 4)), fp16 d. A 3-bit q (low bits + 4·third bit) means d·scale·(q − 4).
struct Q3_KBlock {
    static constexpr TensorType type = TensorType::Q3_K;
    static constexpr std::size_t values = 256, bytes = 110;
    double d = 0;
    std::array<int, 16> scale{};  // −32 … 31
    std::array<unsigned, 256> q{};
    static Q3_KBlock random(std::mt19937_64& rng) {
        Q3_KBlock b;
        b.d = random_scale(rng);
        for (auto& s : b.scale) s = static_cast<int>(random_below(rng, 64)) - 32;
        for (auto& v : b.q) v = random_below(rng, 8);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        std::array<unsigned, 256> low{};
        for (std::size_t j = 0; j < 256; ++j) {
            put_bits(b, j % 32, static_cast<unsigned>(j / 32), 1, q[j] >> 2);
            low[j] = q[j] & 3;
        }
        put_two_bit_quants(b, 32, low);
        for (std::size_t s = 0; s < 16; ++s) {
            const auto stored = static_cast<unsigned>(scale[s] + 32);
            put_bits(b, 96 + s % 8, s < 8 ? 0 : 4, 4, stored & 0xF);
            put_bits(b, 96 + 8 + s % 4, static_cast<unsigned>(2 * (s / 4)), 2, stored >> 4);
        }
        put16(b, 108, fp16_bits(d));
        return b;
    }
    double value(std::size_t j) const { return d * scale[j / 16] * (static_cast<int>(q[j]) - 4); }
};

// ggml's block_q4_K / block_q5_K: fp16 d, fp16 dmin, 12 bytes of eight 6-bit (scale, min) pairs:
// sub-blocks 0-3 keep scale in the low 6 bits of bytes 0-3 and min in those of bytes 4-7;
// sub-blocks 4-7 keep the low 4 bits of scale and min in the low and high nibble of bytes 8-11,
// and their top 2 bits in the top 2 bits of bytes 0-3 (scale) and 4-7 (min).
// q5_K then has qh[32] (value j's fifth bit: bit j / 32 of byte j % 32). Then 128 bytes of
// nibbles: for each pair p of sub-blocks, 32 bytes whose low nibbles are values 64p … 64p + 31
// and high nibbles 64p + 32 … 64p + 63. Value = d·scale·q − dmin·min, per sub-block of 32.
template <TensorType Type, unsigned Bits>
struct ScaleMinKBlock {
    static constexpr TensorType type = Type;
    static constexpr std::size_t values = 256, bytes = 4 + 12 + (Bits == 5 ? 32 : 0) + 128;
    double d = 0, dmin = 0;
    std::array<unsigned, 8> scale{}, min{};
    std::array<unsigned, 256> q{};
    static ScaleMinKBlock random(std::mt19937_64& rng) {
        ScaleMinKBlock b;
        b.d = random_scale(rng);
        b.dmin = random_scale(rng);
        for (std::size_t s = 0; s < 8; ++s) {
            b.scale[s] = random_below(rng, 64);
            b.min[s] = random_below(rng, 64);
        }
        for (auto& v : b.q) v = random_below(rng, 1u << Bits);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        put16(b, 0, fp16_bits(d));
        put16(b, 2, fp16_bits(dmin));
        for (std::size_t s = 0; s < 8; ++s) {
            if (s < 4) {
                put_bits(b, 4 + s, 0, 6, scale[s]);
                put_bits(b, 4 + 4 + s, 0, 6, min[s]);
            } else {
                put_bits(b, 4 + 8 + (s - 4), 0, 4, scale[s] & 0xF);
                put_bits(b, 4 + 8 + (s - 4), 4, 4, min[s] & 0xF);
                put_bits(b, 4 + (s - 4), 6, 2, scale[s] >> 4);
                put_bits(b, 4 + 4 + (s - 4), 6, 2, min[s] >> 4);
            }
        }
        std::size_t at = 16;
        if (Bits == 5) {
            for (std::size_t j = 0; j < 256; ++j) put_bits(b, at + j % 32, static_cast<unsigned>(j / 32), 1, q[j] >> 4);
            at += 32;
        }
        for (std::size_t p = 0; p < 4; ++p) {
            for (std::size_t l = 0; l < 32; ++l) {
                put_bits(b, at + 32 * p + l, 0, 4, q[64 * p + l] & 0xF);
                put_bits(b, at + 32 * p + l, 4, 4, q[64 * p + 32 + l] & 0xF);
            }
        }
        return b;
    }
    double value(std::size_t j) const { return d * scale[j / 32] * q[j] - dmin * min[j / 32]; }
};
using Q4_KBlock = ScaleMinKBlock<TensorType::Q4_K, 4>;
using Q5_KBlock = ScaleMinKBlock<TensorType::Q5_K, 5>;

// ggml's block_q6_K: ql[128], qh[64], int8 scales[16], fp16 d. In half h (128 values), for l in
// 0..31 the values h·128 + l, + 32, + 64, + 96 have their low nibbles in: low half of ql[64h + l],
// low half of ql[64h + 32 + l], high half of ql[64h + l], high half of ql[64h + 32 + l]; their top
// 2 bits in qh[32h + l] at bits 0, 2, 4, 6. Value = d·scale[j / 16]·(q − 32).
struct Q6_KBlock {
    static constexpr TensorType type = TensorType::Q6_K;
    static constexpr std::size_t values = 256, bytes = 210;
    double d = 0;
    std::array<int, 16> scale{};
    std::array<unsigned, 256> q{};
    static Q6_KBlock random(std::mt19937_64& rng) {
        Q6_KBlock b;
        b.d = random_scale(rng);
        for (auto& s : b.scale) s = static_cast<int>(random_below(rng, 256)) - 128;
        for (auto& v : b.q) v = random_below(rng, 64);
        return b;
    }
    Bytes encode() const {
        Bytes b(bytes);
        for (std::size_t h = 0; h < 2; ++h) {
            for (std::size_t l = 0; l < 32; ++l) {
                const std::size_t first = 128 * h + l;
                put_bits(b, 64 * h + l, 0, 4, q[first] & 0xF);
                put_bits(b, 64 * h + 32 + l, 0, 4, q[first + 32] & 0xF);
                put_bits(b, 64 * h + l, 4, 4, q[first + 64] & 0xF);
                put_bits(b, 64 * h + 32 + l, 4, 4, q[first + 96] & 0xF);
                for (unsigned k = 0; k < 4; ++k) put_bits(b, 128 + 32 * h + l, 2 * k, 2, q[first + 32 * k] >> 4);
            }
        }
        for (std::size_t s = 0; s < 16; ++s) b[192 + s] = std::byte(static_cast<std::uint8_t>(scale[s]));
        put16(b, 208, fp16_bits(d));
        return b;
    }
    double value(std::size_t j) const { return d * scale[j / 16] * (static_cast<int>(q[j]) - 32); }
};

template <class Block>
std::vector<float> decode_block(const Block& block) {
    return decode(Block::type, block.encode(), Block::values);
}

// Random blocks of one type, several in a row: dequantize equals the definition exactly.
template <class Block>
void check_random_blocks(std::uint64_t seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (std::size_t count : {1, 2, 7}) {
        Bytes data;
        std::vector<double> expected;
        for (std::size_t i = 0; i < count; ++i) {
            const auto block = Block::random(rng);
            const Bytes bytes = block.encode();
            REQUIRE(bytes.size() == Block::bytes);
            data.insert(data.end(), bytes.begin(), bytes.end());
            for (std::size_t j = 0; j < Block::values; ++j) expected.push_back(block.value(j));
        }
        const auto out = decode(Block::type, data, expected.size());
        for (std::size_t j = 0; j < expected.size(); ++j) {
            CAPTURE(count, j);
            REQUIRE(static_cast<double>(static_cast<float>(expected[j])) == expected[j]);  // exact in float
            REQUIRE(out[j] == static_cast<float>(expected[j]));
        }
    }
}

}  // namespace

TEST_CASE("fp16 and bf16 patterns of the test are the IEEE ones", "[gguf]") {
    CHECK(fp16_bits(1.0) == 0x3C00);
    CHECK(fp16_bits(0.5) == 0x3800);
    CHECK(fp16_bits(-2.0) == 0xC000);
    CHECK(fp16_bits(-0.75) == 0xBA00);
    CHECK(fp16_bits(65504.0) == 0x7BFF);
    CHECK(bf16_bits(1.0f) == 0x3F80);
    CHECK(bf16_bits(-3.140625f) == 0xC049);
}

TEST_CASE("type ids, names and block geometry are ggml's", "[gguf]") {
    struct Expected {
        std::uint32_t id;
        TensorType type;
        const char* name;
        std::uint64_t block_size;
        std::uint64_t block_bytes;
    };
    // From ggml.h's enum ggml_type and ggml.c's type_traits (blck_size, sizeof(block_*)).
    using T = TensorType;
    const std::vector<Expected> table = {
        {0, T::F32, "f32", 1, 4},
        {1, T::F16, "f16", 1, 2},
        {2, T::Q4_0, "q4_0", 32, 2 + 16},
        {3, T::Q4_1, "q4_1", 32, 2 + 2 + 16},
        {6, T::Q5_0, "q5_0", 32, 2 + 4 + 16},
        {7, T::Q5_1, "q5_1", 32, 2 + 2 + 4 + 16},
        {8, T::Q8_0, "q8_0", 32, 2 + 32},
        {9, T::Q8_1, "q8_1", 32, 2 + 2 + 32},
        {10, T::Q2_K, "q2_K", 256, 16 + 64 + 2 + 2},
        {11, T::Q3_K, "q3_K", 256, 32 + 64 + 12 + 2},
        {12, T::Q4_K, "q4_K", 256, 2 + 2 + 12 + 128},
        {13, T::Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128},
        {14, T::Q6_K, "q6_K", 256, 128 + 64 + 16 + 2},
        {15, T::Q8_K, "q8_K", 256, 4 + 256 + 16 * 2},
        {16, T::IQ2_XXS, "iq2_xxs", 256, 2 + 32 * 2},
        {17, T::IQ2_XS, "iq2_xs", 256, 2 + 32 * 2 + 8},
        {18, T::IQ3_XXS, "iq3_xxs", 256, 2 + 96},
        {19, T::IQ1_S, "iq1_s", 256, 2 + 32 + 8 * 2},
        {20, T::IQ4_NL, "iq4_nl", 32, 2 + 16},
        {21, T::IQ3_S, "iq3_s", 256, 2 + 64 + 8 + 32 + 4},
        {22, T::IQ2_S, "iq2_s", 256, 2 + 64 + 8 + 8},
        {23, T::IQ4_XS, "iq4_xs", 256, 2 + 2 + 4 + 128},
        {24, T::I8, "i8", 1, 1},
        {25, T::I16, "i16", 1, 2},
        {26, T::I32, "i32", 1, 4},
        {27, T::I64, "i64", 1, 8},
        {28, T::F64, "f64", 1, 8},
        {29, T::IQ1_M, "iq1_m", 256, 32 + 16 + 8},
        {30, T::BF16, "bf16", 1, 2},
        {34, T::TQ1_0, "tq1_0", 256, 48 + 4 + 2},
        {35, T::TQ2_0, "tq2_0", 256, 64 + 2},
        {39, T::MXFP4, "mxfp4", 32, 1 + 16},
        {40, T::NVFP4, "nvfp4", 64, 4 + 32},
        {41, T::Q1_0, "q1_0", 128, 2 + 16},
        {42, T::Q2_0, "q2_0", 64, 2 + 16},
    };
    for (std::uint32_t id = 0; id < 64; ++id) {
        CAPTURE(id);
        const auto traits = type_traits(id);
        const auto it = std::find_if(table.begin(), table.end(), [&](const Expected& e) { return e.id == id; });
        if (it == table.end()) {
            CHECK_FALSE(traits.has_value());  // removed (4, 5, 31-33, 36-38) or beyond ggml's ids
            continue;
        }
        CHECK(static_cast<std::uint32_t>(it->type) == id);
        REQUIRE(traits.has_value());
        CHECK(traits->name == it->name);
        CHECK(traits->block_size == it->block_size);
        CHECK(traits->block_bytes == it->block_bytes);
    }
}

TEST_CASE("can_dequantize names exactly the converted types", "[gguf]") {
    using T = TensorType;
    const std::vector<T> converted = {T::F32,  T::F16,  T::BF16, T::Q8_0, T::Q4_0, T::Q4_1,  T::Q5_0, T::Q5_1,
                                      T::Q2_K, T::Q3_K, T::Q4_K, T::Q5_K, T::Q6_K, T::TQ2_0, T::Q1_0, T::Q2_0};
    for (std::uint32_t id = 0; id < 64; ++id) {
        CAPTURE(id);
        const auto type = static_cast<T>(id);
        CHECK(can_dequantize(type) == (std::find(converted.begin(), converted.end(), type) != converted.end()));
    }
}

TEST_CASE("f32, f16 and bf16 convert each value", "[gguf]") {
    Bytes f32(3 * 4);
    const std::array<float, 3> floats = {3.25f, -0.0f, 1e-40f};
    std::memcpy(f32.data(), floats.data(), f32.size());
    const auto f32_out = decode(TensorType::F32, f32, 3);
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(std::bit_cast<std::uint32_t>(f32_out[i]) == std::bit_cast<std::uint32_t>(floats[i]));

    const std::array<std::uint16_t, 6> halves = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF, 0x7C00};
    const std::array<float, 6> half_values = {1.0f,     -2.0f,    0x1.554p-2f,
                                              0x1p-24f, 65504.0f, std::numeric_limits<float>::infinity()};
    Bytes f16(2 * halves.size());
    for (std::size_t i = 0; i < halves.size(); ++i) put16(f16, 2 * i, halves[i]);
    const auto f16_out = decode(TensorType::F16, f16, halves.size());
    for (std::size_t i = 0; i < halves.size(); ++i) CHECK(f16_out[i] == half_values[i]);

    const std::array<float, 4> bf16_values = {1.0f, -3.140625f, 0x1p-133f, -std::numeric_limits<float>::infinity()};
    Bytes bf16(2 * bf16_values.size());
    for (std::size_t i = 0; i < bf16_values.size(); ++i) put16(bf16, 2 * i, bf16_bits(bf16_values[i]));
    const auto bf16_out = decode(TensorType::BF16, bf16, bf16_values.size());
    for (std::size_t i = 0; i < bf16_values.size(); ++i) CHECK(bf16_out[i] == bf16_values[i]);
}

TEST_CASE("q4_0, q4_1, q5_0, q5_1, q8_0: hand-worked values", "[gguf]") {
    Q4_0Block q4_0;  // d = 0.5, q[3] = 11 → 0.5·(11 − 8) = 1.5; q[19] = 0 → −4
    q4_0.d = 0.5;
    q4_0.q.fill(8);
    q4_0.q[3] = 11;
    q4_0.q[19] = 0;
    auto out = decode_block(q4_0);
    CHECK(out[3] == 1.5f);
    CHECK(out[19] == -4.0f);
    CHECK(out[0] == 0.0f);

    Q4_1Block q4_1;  // d = 0.25, m = −1: q[7] = 6 → 0.5; q[30] = 15 → 2.75
    q4_1.d = 0.25;
    q4_1.m = -1.0;
    q4_1.q[7] = 6;
    q4_1.q[30] = 15;
    out = decode_block(q4_1);
    CHECK(out[7] == 0.5f);
    CHECK(out[30] == 2.75f);
    CHECK(out[0] == -1.0f);

    Q5_0Block q5_0;  // d = 0.5: q[20] = 31 (fifth bit set) → 7.5; q[2] = 0 → −8
    q5_0.d = 0.5;
    q5_0.q.fill(16);
    q5_0.q[20] = 31;
    q5_0.q[2] = 0;
    out = decode_block(q5_0);
    CHECK(out[20] == 7.5f);
    CHECK(out[2] == -8.0f);
    CHECK(out[21] == 0.0f);

    Q5_1Block q5_1;  // d = 0.125, m = 2: q[17] = 17 → 4.125
    q5_1.d = 0.125;
    q5_1.m = 2.0;
    q5_1.q[17] = 17;
    out = decode_block(q5_1);
    CHECK(out[17] == 4.125f);
    CHECK(out[16] == 2.0f);

    Q8_0Block q8_0;  // d = 0.25: q[5] = −7 → −1.75
    q8_0.d = 0.25;
    q8_0.q[5] = -7;
    q8_0.q[31] = 127;
    out = decode_block(q8_0);
    CHECK(out[5] == -1.75f);
    CHECK(out[31] == 31.75f);
}

TEST_CASE("q1_0: bit j of the block is bit j % 8 of byte j / 8, 1 → +d, 0 → −d", "[gguf]") {
    Bytes block(18);
    put16(block, 0, fp16_bits(0.75));
    block[2 + 2] = std::byte{0x04};  // byte 2, bit 2: weight 18
    auto out = decode(TensorType::Q1_0, block, 128);
    CHECK(out[18] == 0.75f);
    CHECK(out[17] == -0.75f);
    CHECK(out[19] == -0.75f);
    for (std::size_t j = 0; j < 128; ++j) {
        CAPTURE(j);
        Bytes one(18);
        put16(one, 0, fp16_bits(0.5));
        one[2 + j / 8] = std::byte(1u << (j % 8));
        out = decode(TensorType::Q1_0, one, 128);
        for (std::size_t i = 0; i < 128; ++i) REQUIRE(out[i] == (i == j ? 0.5f : -0.5f));
    }
}

TEST_CASE("q2_0, tq2_0: hand-worked values", "[gguf]") {
    Q2_0Block q2_0;  // d = 1.5: q[9] = 3 → 3; q[10] = 0 → −1.5
    q2_0.d = 1.5;
    q2_0.q.fill(1);
    q2_0.q[9] = 3;
    q2_0.q[10] = 0;
    auto out = decode_block(q2_0);
    CHECK(out[9] == 3.0f);
    CHECK(out[10] == -1.5f);
    CHECK(out[8] == 0.0f);

    TQ2_0Block tq2_0;  // d = 0.5 (stored last): q[37] = 2 → 0.5, q[200] = 0 → −0.5
    tq2_0.d = 0.5;
    tq2_0.q.fill(1);
    tq2_0.q[37] = 2;
    tq2_0.q[200] = 0;
    out = decode_block(tq2_0);
    CHECK(out[37] == 0.5f);
    CHECK(out[200] == -0.5f);
    CHECK(out[5] == 0.0f);
    // q[37] sits in byte 5 (37 % 32), bits 2-3 ((37 / 32) · 2).
    CHECK(tq2_0.encode()[5] == std::byte{0b01011001});
}

TEST_CASE("k-quants: hand-worked values", "[gguf]") {
    Q2_KBlock q2_K;  // d = 0.5, dmin = 0.25, sub-block 3: scale 10, min 4; q[50] = 3 → 15 − 1 = 14
    q2_K.d = 0.5;
    q2_K.dmin = 0.25;
    q2_K.scale[3] = 10;
    q2_K.min[3] = 4;
    q2_K.q[50] = 3;
    auto out = decode_block(q2_K);
    CHECK(out[50] == 14.0f);
    CHECK(out[51] == -1.0f);

    Q3_KBlock q3_K;  // d = 0.25, sub-block 9 scale 13: q[150] = 6 → 0.25·13·2 = 6.5; q = 1 → −9.75
    q3_K.d = 0.25;
    q3_K.q.fill(4);
    q3_K.scale[9] = 13;
    q3_K.q[150] = 6;
    q3_K.q[151] = 1;
    q3_K.scale[15] = -32;
    q3_K.q[255] = 7;  // 0.25·(−32)·3 = −24
    out = decode_block(q3_K);
    CHECK(out[150] == 6.5f);
    CHECK(out[151] == -9.75f);
    CHECK(out[255] == -24.0f);
    CHECK(out[0] == 0.0f);

    Q4_KBlock q4_K;  // d = 0.5, dmin = 0.25, sub-block 5: scale 40, min 9; q[170] = 7 → 140 − 2.25
    q4_K.d = 0.5;
    q4_K.dmin = 0.25;
    q4_K.scale[5] = 40;
    q4_K.min[5] = 9;
    q4_K.q[170] = 7;
    q4_K.scale[0] = 63;  // sub-block 0: 0.5·63·15 = 472.5
    q4_K.q[0] = 15;
    out = decode_block(q4_K);
    CHECK(out[170] == 137.75f);
    CHECK(out[171] == -2.25f);
    CHECK(out[0] == 472.5f);

    Q5_KBlock q5_K;  // d = 0.5, dmin = 0.25, sub-block 6: scale 33, min 50; q[200] = 27 → 445.5 − 12.5
    q5_K.d = 0.5;
    q5_K.dmin = 0.25;
    q5_K.scale[6] = 33;
    q5_K.min[6] = 50;
    q5_K.q[200] = 27;
    out = decode_block(q5_K);
    CHECK(out[200] == 433.0f);
    CHECK(out[201] == -12.5f);

    Q6_KBlock q6_K;  // d = 0.25, scale[12] = −3: q[200] = 50 → 0.25·(−3)·18 = −13.5
    q6_K.d = 0.25;
    q6_K.q.fill(32);
    q6_K.scale[12] = -3;
    q6_K.q[200] = 50;
    q6_K.q[201] = 0;
    out = decode_block(q6_K);
    CHECK(out[200] == -13.5f);
    CHECK(out[201] == 24.0f);
    CHECK(out[0] == 0.0f);
}

TEST_CASE("every converted block type equals its definition on random blocks", "[gguf]") {
    const std::uint64_t seed = 0x6767'7566'0000'0001;
    check_random_blocks<Q4_0Block>(seed);
    check_random_blocks<Q4_1Block>(seed + 1);
    check_random_blocks<Q5_0Block>(seed + 2);
    check_random_blocks<Q5_1Block>(seed + 3);
    check_random_blocks<Q8_0Block>(seed + 4);
    check_random_blocks<Q1_0Block>(seed + 5);
    check_random_blocks<Q2_0Block>(seed + 6);
    check_random_blocks<TQ2_0Block>(seed + 7);
    check_random_blocks<Q2_KBlock>(seed + 8);
    check_random_blocks<Q3_KBlock>(seed + 9);
    check_random_blocks<Q4_KBlock>(seed + 10);
    check_random_blocks<Q5_KBlock>(seed + 11);
    check_random_blocks<Q6_KBlock>(seed + 12);
}

TEST_CASE("dequantize refuses wrong sizes and types it does not convert, naming them", "[gguf]") {
    std::vector<float> out(256);
    const Bytes block(144);
    CHECK_NOTHROW(dequantize(TensorType::Q4_K, block, out));
    CHECK_NOTHROW(dequantize(TensorType::Q4_K, {}, {}));

    std::vector<float> ragged(255);
    REQUIRE_THROWS_AS(dequantize(TensorType::Q4_K, block, ragged), std::invalid_argument);
    REQUIRE_THROWS_WITH(dequantize(TensorType::Q4_K, block, ragged),
                        Contains("q4_K") && Contains("255") && Contains("256"));

    const Bytes short_block(143);
    REQUIRE_THROWS_AS(dequantize(TensorType::Q4_K, short_block, out), std::invalid_argument);
    REQUIRE_THROWS_WITH(dequantize(TensorType::Q4_K, short_block, out),
                        Contains("q4_K") && Contains("143") && Contains("144"));
    const Bytes long_data(2 * 18 + 1);
    std::vector<float> two_blocks(64);
    REQUIRE_THROWS_WITH(dequantize(TensorType::Q4_0, long_data, two_blocks),
                        Contains("q4_0") && Contains("37") && Contains("36"));

    const Bytes iq(66);
    REQUIRE_THROWS_AS(dequantize(TensorType::IQ2_XXS, iq, out), std::invalid_argument);
    REQUIRE_THROWS_WITH(dequantize(TensorType::IQ2_XXS, iq, out), Contains("iq2_xxs"));
    REQUIRE_THROWS_WITH(dequantize(static_cast<TensorType>(4), iq, out), Contains("4") && Contains("not a ggml type"));
    REQUIRE_THROWS_WITH(dequantize(static_cast<TensorType>(1000), iq, out), Contains("1000"));
}
