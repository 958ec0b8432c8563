#pragma once
// The tensor types of GGUF files: ggml's numeric type ids (`enum ggml_type` in ggml.h), each
// type's block geometry (values and bytes per block, as in ggml's type_traits table), and the
// conversion of a tensor's blocks to float for the types a reader of weights needs.
//
// Block layouts are ggml's (ggml-common.h: ggml's block_q4_0, block_q4_K, ...). Every decoder
// computes each value with the float operations of ggml's reference dequantize_row_* in the same
// order, so the results equal ggml's bit for bit (the one exception: a bf16 signalling NaN comes
// out quiet). Every product that is then added to is exact (an fp16 scale times small integers),
// so a compiler fusing a * b - c into an fma does not change a result.
// Fields are little-endian in the file. Like binary_io.hpp, this header requires a little-endian
// host; fields are read with std::memcpy, since blocks have no alignment inside a file.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include <multibool/core/half.hpp>
#include <multibool/core/shape.hpp>

namespace multibool::gguf {

static_assert(std::endian::native == std::endian::little,
              "GGUF tensor data is little-endian; big-endian hosts are not supported");

// ggml's type ids; the gaps (4, 5, 31-33, 36-38) are ids ggml removed.
enum class TensorType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
};

struct TypeTraits {
    std::string_view name;      // as ggml spells it: "f32", "q4_K", "q1_0"
    std::uint64_t block_size;   // values per block
    std::uint64_t block_bytes;  // bytes per block
};

namespace detail {

inline unsigned byte_at(const std::byte* p, std::size_t i) noexcept { return std::to_integer<unsigned>(p[i]); }
inline std::uint32_t read_u32(const std::byte* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
// A 16-bit float field (half or bfloat16), widened exactly.
template <class Float16Type>
float read_16(const std::byte* p) noexcept {
    std::uint16_t bits;
    std::memcpy(&bits, p, sizeof bits);
    return static_cast<float>(Float16Type::from_bits(bits));
}

inline void decode_f32(const std::byte* block, float* y) noexcept { std::memcpy(y, block, sizeof(float)); }
template <class Float16Type>
void decode_16(const std::byte* block, float* y) noexcept {
    *y = read_16<Float16Type>(block);
}

// ggml's block_q4_0, block_q4_1, block_q5_0, block_q5_1 (32 values): fp16 d, for the _1 types fp16
// m, for the q5 types a 32-bit word whose bit j is bit 4 of value j, then 16 bytes whose byte j
// holds value j in its low nibble and value j + 16 in its high nibble. The _0 types are centred,
// d·(q − 8) or d·(q − 16); the _1 types are d·q + m.
template <bool WithMin, bool FifthBit>
void decode_q_legacy(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block);
    std::size_t at = 2;
    float m = 0.0f;
    if constexpr (WithMin) {
        m = read_16<half>(block + at);
        at += 2;
    }
    std::uint32_t fifth = 0;
    if constexpr (FifthBit) {
        fifth = read_u32(block + at);
        at += 4;
    }
    constexpr int centre = WithMin ? 0 : (FifthBit ? 16 : 8);
    const auto value = [&](unsigned q) {
        if constexpr (WithMin) {
            return static_cast<float>(q) * d + m;
        } else {
            return static_cast<float>(static_cast<int>(q) - centre) * d;
        }
    };
    for (unsigned j = 0; j < 16; ++j) {
        const unsigned byte = byte_at(block + at, j);
        y[j] = value((byte & 0xFu) | (((fifth >> j) & 1u) << 4));
        y[j + 16] = value((byte >> 4) | (((fifth >> (j + 16)) & 1u) << 4));
    }
}

// ggml's block_q8_0: fp16 d, 32 int8 q; d·q.
inline void decode_q8_0(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block);
    for (std::size_t j = 0; j < 32; ++j) {
        y[j] = static_cast<float>(static_cast<std::int8_t>(byte_at(block + 2, j))) * d;
    }
}

// ggml's block_q1_0: fp16 d, 128 sign bits; value j is bit j % 8 of byte j / 8, 1 → +d, 0 → −d.
inline void decode_q1_0(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block);
    for (std::size_t j = 0; j < 128; ++j) y[j] = ((byte_at(block + 2, j / 8) >> (j % 8)) & 1u) != 0 ? d : -d;
}

// ggml's block_q2_0: fp16 d, 64 two-bit q; value j is bits 2·(j % 4) of byte j / 4; d·(q − 1).
inline void decode_q2_0(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block);
    for (std::size_t j = 0; j < 64; ++j) {
        const unsigned q = (byte_at(block + 2, j / 4) >> (2 * (j % 4))) & 3u;
        y[j] = static_cast<float>(static_cast<int>(q) - 1) * d;
    }
}

// Super-blocks of 256 values (QK_K). The 2-bit quants of tq2_0, q2_K and q3_K, and the high bits of
// q6_K, share one packing: value e is the 2-bit field 2·((e / 32) % 4) of byte 32·(e / 128) + e % 32.
// In the layouts with 16-value sub-blocks (q2_K, q3_K, q6_K), value e uses scale e / 16.
inline constexpr std::size_t super_block = 256;
inline unsigned two_bit_field(const std::byte* bytes, std::size_t e) noexcept {
    return (byte_at(bytes, 32 * (e / 128) + e % 32) >> (2 * ((e / 32) % 4))) & 3u;
}

// ggml's block_tq2_0: 64 bytes of two-bit q, then fp16 d; d·(q − 1).
inline void decode_tq2_0(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block + 64);
    for (std::size_t e = 0; e < super_block; ++e) {
        y[e] = static_cast<float>(static_cast<int>(two_bit_field(block, e)) - 1) * d;
    }
}

// ggml's block_q2_K: 16 bytes of scales (low nibble: scale, high nibble: min), 64 bytes of two-bit
// q, fp16 d, fp16 dmin; value = (d·scale)·q − dmin·min.
inline void decode_q2_K(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block + 80);
    const float dmin = read_16<half>(block + 82);
    for (std::size_t s = 0; s < 16; ++s) {
        const unsigned packed = byte_at(block, s);
        const float scale = d * static_cast<float>(packed & 0xFu);
        const float min = dmin * static_cast<float>(packed >> 4);
        for (std::size_t e = 16 * s; e < 16 * s + 16; ++e) {
            y[e] = scale * static_cast<float>(two_bit_field(block + 16, e)) - min;
        }
    }
}

// ggml's block_q3_K: 32 bytes of high bits (value e's is bit e / 32 of byte e % 32; a clear bit
// subtracts 4), 64 bytes of two-bit q, 12 bytes holding sixteen 6-bit scales (scale s: low four bits
// in nibble s / 8 of byte s % 8, top two bits at bit 2·(s / 4) of byte 8 + s % 4), fp16 d;
// value = (d·(scale − 32))·(q − 4·!high).
inline void decode_q3_K(const std::byte* block, float* y) noexcept {
    const std::byte* high = block;
    const std::byte* scales = block + 96;
    const float d = read_16<half>(block + 108);
    for (std::size_t s = 0; s < 16; ++s) {
        const unsigned low_bits = (byte_at(scales, s % 8) >> (4 * (s / 8))) & 0xFu;
        const unsigned top_bits = (byte_at(scales, 8 + s % 4) >> (2 * (s / 4))) & 3u;
        const float scale = d * static_cast<float>(static_cast<int>(low_bits | (top_bits << 4)) - 32);
        for (std::size_t e = 16 * s; e < 16 * s + 16; ++e) {
            const bool high_set = ((byte_at(high, e % 32) >> (e / 32)) & 1u) != 0;
            const int q = static_cast<int>(two_bit_field(block + 32, e)) - (high_set ? 0 : 4);
            y[e] = scale * static_cast<float>(q);
        }
    }
}

// The 6-bit scale and min of sub-block s (of 8) in the 12 bytes of ggml's block_q4_K / block_q5_K:
// for s < 4, the low 6 bits of bytes s and s + 4; for s ≥ 4, the low and high nibble of byte s + 4,
// with their top two bits in the top two bits of bytes s − 4 and s.
struct ScaleMin {
    unsigned scale;
    unsigned min;
};
inline ScaleMin scale_min_k4(const std::byte* scales, std::size_t s) noexcept {
    if (s < 4) return {byte_at(scales, s) & 63u, byte_at(scales, s + 4) & 63u};
    return {(byte_at(scales, s + 4) & 0xFu) | ((byte_at(scales, s - 4) >> 6) << 4),
            (byte_at(scales, s + 4) >> 4) | ((byte_at(scales, s) >> 6) << 4)};
}

// ggml's block_q4_K and block_q5_K: fp16 d, fp16 dmin, 12 bytes of scales and mins, for q5_K 32
// bytes of fifth bits (value e's is bit e / 32 of byte e % 32), then 128 bytes of nibbles: value e
// is the low (e / 32 even) or high nibble of byte 32·(e / 64) + e % 32; in sub-block s of 32,
// value = (d·scale)·q − dmin·min.
template <bool FifthBit>
void decode_q4_q5_K(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block);
    const float dmin = read_16<half>(block + 2);
    const std::byte* fifth = block + 16;
    const std::byte* nibbles = block + (FifthBit ? 48 : 16);
    for (std::size_t s = 0; s < 8; ++s) {
        const auto [scale_q, min_q] = scale_min_k4(block + 4, s);
        const float scale = d * static_cast<float>(scale_q);
        const float min = dmin * static_cast<float>(min_q);
        for (std::size_t i = 0; i < 32; ++i) {
            unsigned q = (byte_at(nibbles, 32 * (s / 2) + i) >> (4 * (s % 2))) & 0xFu;
            if constexpr (FifthBit) q |= ((byte_at(fifth, i) >> s) & 1u) << 4;
            y[32 * s + i] = scale * static_cast<float>(q) - min;
        }
    }
}

// ggml's block_q6_K: 128 bytes of low nibbles (value e: nibble (e / 64) % 2 of byte
// 64·(e / 128) + 32·((e / 32) % 2) + e % 32), 64 bytes of high two-bit fields, 16 int8 scales,
// fp16 d; value = (d·scale)·(q − 32).
inline void decode_q6_K(const std::byte* block, float* y) noexcept {
    const float d = read_16<half>(block + 208);
    for (std::size_t s = 0; s < 16; ++s) {
        const float scale = d * static_cast<float>(static_cast<std::int8_t>(byte_at(block + 192, s)));
        for (std::size_t e = 16 * s; e < 16 * s + 16; ++e) {
            const unsigned low =
                (byte_at(block, 64 * (e / 128) + 32 * ((e / 32) % 2) + e % 32) >> (4 * ((e / 64) % 2))) & 0xFu;
            const unsigned q = low | (two_bit_field(block + 128, e) << 4);
            y[e] = scale * static_cast<float>(static_cast<int>(q) - 32);
        }
    }
}

using BlocksDecoder = void (*)(const std::byte* data, float* out, std::size_t blocks) noexcept;

template <std::size_t Values, std::size_t Bytes, void (*DecodeBlock)(const std::byte*, float*) noexcept>
void decode_blocks(const std::byte* data, float* out, std::size_t blocks) noexcept {
    for (std::size_t b = 0; b < blocks; ++b) DecodeBlock(data + b * Bytes, out + b * Values);
}

struct TypeEntry {
    TypeTraits traits;       // block_size 0: an id ggml does not use
    BlocksDecoder decode{};  // null: no conversion to float here
};

template <std::size_t Values, std::size_t Bytes, void (*DecodeBlock)(const std::byte*, float*) noexcept>
constexpr TypeEntry convertible(std::string_view name) {
    return {{name, Values, Bytes}, &decode_blocks<Values, Bytes, DecodeBlock>};
}
constexpr TypeEntry layout_only(std::string_view name, std::uint64_t values, std::uint64_t bytes) {
    return {{name, values, bytes}, nullptr};
}

inline constexpr std::size_t type_id_count = 43;

// Names and sizes as in ggml's type_traits table.
constexpr std::array<TypeEntry, type_id_count> make_type_table() {
    std::array<TypeEntry, type_id_count> table{};
    const auto at = [&](TensorType type) -> TypeEntry& { return table[static_cast<std::size_t>(type)]; };
    using T = TensorType;
    at(T::F32) = convertible<1, 4, decode_f32>("f32");
    at(T::F16) = convertible<1, 2, decode_16<half>>("f16");
    at(T::Q4_0) = convertible<32, 18, decode_q_legacy<false, false>>("q4_0");
    at(T::Q4_1) = convertible<32, 20, decode_q_legacy<true, false>>("q4_1");
    at(T::Q5_0) = convertible<32, 22, decode_q_legacy<false, true>>("q5_0");
    at(T::Q5_1) = convertible<32, 24, decode_q_legacy<true, true>>("q5_1");
    at(T::Q8_0) = convertible<32, 34, decode_q8_0>("q8_0");
    at(T::Q8_1) = layout_only("q8_1", 32, 36);
    at(T::Q2_K) = convertible<super_block, 84, decode_q2_K>("q2_K");
    at(T::Q3_K) = convertible<super_block, 110, decode_q3_K>("q3_K");
    at(T::Q4_K) = convertible<super_block, 144, decode_q4_q5_K<false>>("q4_K");
    at(T::Q5_K) = convertible<super_block, 176, decode_q4_q5_K<true>>("q5_K");
    at(T::Q6_K) = convertible<super_block, 210, decode_q6_K>("q6_K");
    at(T::Q8_K) = layout_only("q8_K", super_block, 292);
    at(T::IQ2_XXS) = layout_only("iq2_xxs", super_block, 66);
    at(T::IQ2_XS) = layout_only("iq2_xs", super_block, 74);
    at(T::IQ3_XXS) = layout_only("iq3_xxs", super_block, 98);
    at(T::IQ1_S) = layout_only("iq1_s", super_block, 50);
    at(T::IQ4_NL) = layout_only("iq4_nl", 32, 18);
    at(T::IQ3_S) = layout_only("iq3_s", super_block, 110);
    at(T::IQ2_S) = layout_only("iq2_s", super_block, 82);
    at(T::IQ4_XS) = layout_only("iq4_xs", super_block, 136);
    at(T::I8) = layout_only("i8", 1, 1);
    at(T::I16) = layout_only("i16", 1, 2);
    at(T::I32) = layout_only("i32", 1, 4);
    at(T::I64) = layout_only("i64", 1, 8);
    at(T::F64) = layout_only("f64", 1, 8);
    at(T::IQ1_M) = layout_only("iq1_m", super_block, 56);
    at(T::BF16) = convertible<1, 2, decode_16<bfloat16>>("bf16");
    at(T::TQ1_0) = layout_only("tq1_0", super_block, 54);
    at(T::TQ2_0) = convertible<super_block, 66, decode_tq2_0>("tq2_0");
    at(T::MXFP4) = layout_only("mxfp4", 32, 17);
    at(T::NVFP4) = layout_only("nvfp4", 64, 36);
    at(T::Q1_0) = convertible<128, 18, decode_q1_0>("q1_0");
    at(T::Q2_0) = convertible<64, 18, decode_q2_0>("q2_0");
    return table;
}

inline constexpr std::array<TypeEntry, type_id_count> type_table = make_type_table();

// The entry of a type id ggml uses, else null.
constexpr const TypeEntry* type_entry(std::uint32_t id) noexcept {
    if (id >= type_id_count || type_table[id].traits.block_size == 0) return nullptr;
    return &type_table[id];
}

}  // namespace detail

// The block geometry of a type id, or nullopt for ids ggml does not use (removed or unknown).
[[nodiscard]] constexpr std::optional<TypeTraits> type_traits(std::uint32_t id) noexcept {
    const auto* entry = detail::type_entry(id);
    if (entry == nullptr) return std::nullopt;
    return entry->traits;
}

// Whether dequantize converts this type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K,
// q4_K, q5_K, q6_K, tq2_0, q1_0, q2_0.
[[nodiscard]] constexpr bool can_dequantize(TensorType type) noexcept {
    const auto* entry = detail::type_entry(static_cast<std::uint32_t>(type));
    return entry != nullptr && entry->decode != nullptr;
}

// Converts out.size() values stored as ggml blocks of `type` to float. out.size() must be a whole
// number of blocks and data exactly those blocks' bytes; std::invalid_argument (naming the type
// and the sizes) otherwise, and for a type this header does not convert.
inline void dequantize(TensorType type, std::span<const std::byte> data, std::span<float> out) {
    const auto id = static_cast<std::uint32_t>(type);
    const auto* entry = detail::type_entry(id);
    if (entry == nullptr) {
        throw std::invalid_argument("gguf::dequantize: " + std::to_string(id) + " is not a ggml type id");
    }
    const std::string name(entry->traits.name);
    if (entry->decode == nullptr) {
        throw std::invalid_argument("gguf::dequantize: type " + name + " (id " + std::to_string(id) +
                                    ") cannot be converted to float");
    }
    const auto values = static_cast<std::size_t>(entry->traits.block_size);
    if (out.size() % values != 0) {
        throw std::invalid_argument("gguf::dequantize(" + name + "): " + std::to_string(out.size()) +
                                    " values are not a whole number of " + std::to_string(values) + "-value blocks");
    }
    const std::size_t blocks = out.size() / values;
    const std::size_t bytes =
        checked_product("gguf::dequantize", blocks, static_cast<std::size_t>(entry->traits.block_bytes));
    if (data.size() != bytes) {
        throw std::invalid_argument("gguf::dequantize(" + name + "): " + std::to_string(out.size()) + " values take " +
                                    std::to_string(bytes) + " bytes, the data has " + std::to_string(data.size()));
    }
    entry->decode(data.data(), out.data(), blocks);
}

}  // namespace multibool::gguf
