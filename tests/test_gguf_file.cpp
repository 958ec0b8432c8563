// The GGUF container against files built byte by byte here from the format's description
// (ggml's docs/gguf.md): every metadata type, alignment, the writer's exact bytes, every error
// with the key or tensor it names, every truncation and sampled corruptions, and Q1_0 blocks as
// planes and scales byte for byte.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "test_support.hpp"

#include <multibool/core/gguf_file.hpp>
#include <multibool/core/gguf_metadata.hpp>
#include <multibool/core/gguf_tensor_types.hpp>
#include <multibool/core/gguf_writer.hpp>
#include <multibool/core/q1_0_blocks.hpp>

using namespace multibool;
using namespace multibool::gguf;
using Catch::Matchers::Contains;

// Every GGUF file below is built byte by byte by Builder from ggml's docs/gguf.md (little-endian
// fields written by shifts, not by the headers under test), and every expected value is the one
// written. Tensor data is hand-made with values f32/f16/q8_0 hold exactly, so reads compare with ==.

namespace {

// GGUF value type codes and ggml tensor type ids, from the spec (not from the headers).
enum : std::uint32_t {
    t_u8 = 0,
    t_i8 = 1,
    t_u16 = 2,
    t_i16 = 3,
    t_u32 = 4,
    t_i32 = 5,
    t_f32 = 6,
    t_bool = 7,
    t_str = 8,
    t_arr = 9,
    t_u64 = 10,
    t_i64 = 11,
    t_f64 = 12,
};
enum : std::uint32_t { ggml_f32 = 0, ggml_f16 = 1, ggml_q4_0 = 2, ggml_q8_0 = 8, ggml_i32 = 26, ggml_f64 = 28 };
enum : std::uint32_t { ggml_q1_0 = 41 };

class Builder {
public:
    template <class T>
    Builder& le(T value) {
        static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
        const auto u = static_cast<std::make_unsigned_t<T>>(value);
        for (std::size_t i = 0; i < sizeof(T); ++i) bytes_.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
        return *this;
    }
    Builder& u8(std::uint8_t v) { return le(v); }
    Builder& i8(std::int8_t v) { return le(v); }
    Builder& u16(std::uint16_t v) { return le(v); }
    Builder& i16(std::int16_t v) { return le(v); }
    Builder& u32(std::uint32_t v) { return le(v); }
    Builder& i32(std::int32_t v) { return le(v); }
    Builder& u64(std::uint64_t v) { return le(v); }
    Builder& i64(std::int64_t v) { return le(v); }
    Builder& f32(float v) { return le(std::bit_cast<std::uint32_t>(v)); }
    Builder& f64(double v) { return le(std::bit_cast<std::uint64_t>(v)); }
    Builder& str(std::string_view s) {
        u64(s.size());
        return raw(s);
    }
    Builder& raw(std::string_view s) {
        bytes_.append(s);
        return *this;
    }
    Builder& zeros(std::size_t n) {
        bytes_.append(n, '\0');
        return *this;
    }
    Builder& header(std::uint32_t version, std::uint64_t tensors, std::uint64_t keys) {
        return raw("GGUF").u32(version).u64(tensors).u64(keys);
    }
    // A key and its type; the value follows.
    Builder& key(std::string_view name, std::uint32_t type) { return str(name).u32(type); }
    // An array's element type and count (after key(name, t_arr)); the elements follow.
    Builder& array(std::uint32_t element_type, std::uint64_t count) { return u32(element_type).u64(count); }
    Builder& tensor_info(std::string_view name, const std::vector<std::uint64_t>& dims, std::uint32_t type,
                         std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(dims.size()));
        for (auto d : dims) u64(d);
        return u32(type).u64(offset);
    }
    Builder& pad(std::size_t alignment) { return zeros((alignment - bytes_.size() % alignment) % alignment); }

    [[nodiscard]] const std::string& bytes() const { return bytes_; }
    [[nodiscard]] std::size_t size() const { return bytes_.size(); }

private:
    std::string bytes_;
};

std::vector<std::byte> as_bytes(const std::string& s) {
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}
std::string as_string(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// A TempDir whose files are removed before they are written again.
class Scratch : public multibool::testing::TempDir {
public:
    [[nodiscard]] const std::filesystem::path& dir() const { return path(); }
    std::filesystem::path write(const std::string& bytes, const std::string& name = "file.gguf") const {
        const auto file = path() / name;
        // Removed, not truncated: ext4 flushes a file truncated and rewritten to disk on close, which
        // would make the thousands of rewrites below wait on the disk.
        std::filesystem::remove(file);
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.close();
        REQUIRE(out.good());
        return file;
    }
};

// The FormatError a file is refused with (any other exception, or none, fails the test).
struct Refusal {
    std::string field;
    std::string message;
};
template <class F>
Refusal format_error(F&& f) {
    try {
        f();
    } catch (const FormatError& e) {
        return {e.field(), e.what()};
    }
    FAIL("no FormatError was thrown");
    return {};
}
Refusal refusal(const Scratch& scratch, const std::string& bytes) {
    const auto path = scratch.write(bytes);
    return format_error([&] { const File file(path); });
}

// Value equality (Value has no operator==): type, scalar, element type and elements.
bool same_value(const Value& a, const Value& b) {
    if (a.type() != b.type()) return false;
    if (a.type() != ValueType::array) return a.scalar() == b.scalar();
    if (a.element_type() != b.element_type() || a.elements().size() != b.elements().size()) return false;
    for (std::size_t i = 0; i < a.elements().size(); ++i) {
        if (!same_value(a.elements()[i], b.elements()[i])) return false;
    }
    return true;
}
void require_same_metadata(const Metadata& a, const Metadata& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
        CAPTURE(a.entries()[k].first);
        REQUIRE(a.entries()[k].first == b.entries()[k].first);
        REQUIRE(same_value(a.entries()[k].second, b.entries()[k].second));
    }
}

// fp16 bits → value by IEEE binary16's definition (finite patterns).
double fp16_value(std::uint16_t bits) {
    const int exponent = (bits >> 10) & 0x1F;
    const int mantissa = bits & 0x3FF;
    REQUIRE(exponent != 31);
    const double magnitude =
        exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 15 - 10);
    return (bits & 0x8000) ? -magnitude : magnitude;
}

// One key of each of the 13 value types (and empty, nested and string arrays), padded to 32 as a
// writer would (the file has no tensors, so the padding is not needed to read it).
constexpr float f32_value = 0.1f;
constexpr double f64_value = -1.5e300;
Builder all_types_file() {
    Builder b;
    b.header(3, 0, 17);
    b.key("t.u8", t_u8).u8(254);
    b.key("t.i8", t_i8).i8(-7);
    b.key("t.u16", t_u16).u16(65000);
    b.key("t.i16", t_i16).i16(-30000);
    b.key("t.u32", t_u32).u32(4000000000u);
    b.key("t.i32", t_i32).i32(-2000000000);
    b.key("t.f32", t_f32).f32(f32_value);
    b.key("t.bool", t_bool).u8(1);
    b.key("t.false", t_bool).u8(0);
    b.key("t.str", t_str).str("h\xc3\xa9llo");
    b.key("t.empty", t_str).str("");
    b.key("t.u64", t_u64).u64(std::numeric_limits<std::uint64_t>::max());
    b.key("t.i64", t_i64).i64(std::numeric_limits<std::int64_t>::min());
    b.key("t.f64", t_f64).f64(f64_value);
    b.key("t.array.u32", t_arr).array(t_u32, 3).u32(1).u32(2).u32(0xFFFFFFFFu);
    b.key("t.array.str", t_arr).array(t_str, 3).str("a").str("").str("ccc");
    b.key("t.array.nested", t_arr).array(t_arr, 3);
    b.array(t_i16, 2).i16(-1).i16(2);
    b.array(t_str, 1).str("x");
    b.array(t_f64, 0);
    return b.pad(32);
}

// A file of two tensors with general.alignment 64: "a" f32 [3, 2] at 0, "b" f16 [5] at 64, each
// padded to 64. Returns the bytes; the data section starts at data_offset.
const std::vector<float> a_values = {1.0f, -2.5f, 0.125f, 1e-3f, -0.0f, 3e38f};
const std::vector<std::uint16_t> b_bits = {0x3C00, 0xC100, 0x3800, 0x7BFF, 0x8000};  // 1, -2.5, 0.5, 65504, -0
const std::vector<float> b_values = {1.0f, -2.5f, 0.5f, 65504.0f, -0.0f};
Builder aligned_file(std::uint64_t& data_offset) {
    Builder b;
    b.header(3, 2, 2);
    b.key("general.alignment", t_u32).u32(64);
    b.key("general.name", t_str).str("tiny");
    b.tensor_info("a", {3, 2}, ggml_f32, 0);
    b.tensor_info("b", {5}, ggml_f16, 64);
    b.pad(64);
    data_offset = b.size();
    for (float v : a_values) b.f32(v);
    b.pad(64);
    for (auto bits : b_bits) b.u16(bits);
    return b.pad(64);
}

// The small file of the robustness tests: 5 keys (arrays of strings, floats and arrays), a q8_0
// and an f32 tensor; the last tensor ends on the alignment, so the file has no trailing padding
// and every truncation cuts tensor data or more.
Builder robustness_file() {
    Builder b;
    b.header(3, 2, 5);
    b.key("general.architecture", t_str).str("llama");
    b.key("tokenizer.ggml.tokens", t_arr).array(t_str, 3).str("<s>").str("a").str("bc");
    b.key("tokenizer.ggml.scores", t_arr).array(t_f32, 3).f32(0.0f).f32(-1.5f).f32(2.0f);
    b.key("general.alignment", t_u32).u32(32);
    b.key("n", t_arr).array(t_arr, 2).array(t_u16, 1).u16(7).array(t_bool, 2).u8(1).u8(0);
    b.tensor_info("tok", {32, 2}, ggml_q8_0, 0);
    b.tensor_info("norm", {8}, ggml_f32, 96);
    b.pad(32);
    for (int block = 0; block < 2; ++block) {
        b.u16(0x3800);  // d = 0.5
        for (int j = 0; j < 32; ++j) b.i8(static_cast<std::int8_t>(j - 16 + block));
    }
    b.pad(32);
    for (int j = 0; j < 8; ++j) b.f32(static_cast<float>(j) - 3.5f);
    return b;
}

std::string written_bytes(const Writer& writer) {
    std::ostringstream out(std::ios::binary);
    writer.write_to(out);
    return out.str();
}

}  // namespace

// ---- 1. Hand-built files through the reader.

TEST_CASE("GGUF: every value type reads back as written", "[core][gguf]") {
    const Scratch scratch;
    const File file(scratch.write(all_types_file().bytes()));
    REQUIRE(file.version() == 3);
    REQUIRE(file.alignment() == 32);
    REQUIRE(file.tensors().empty());
    const Metadata& m = file.metadata();
    REQUIRE(m.size() == 17);
    REQUIRE(m.entries()[0].first == "t.u8");
    REQUIRE(m.entries()[16].first == "t.array.nested");

    const auto type_of = [&](const std::string& key) { return m.find(key)->type(); };
    REQUIRE(type_of("t.u8") == ValueType::uint8);
    REQUIRE(type_of("t.i8") == ValueType::int8);
    REQUIRE(type_of("t.u16") == ValueType::uint16);
    REQUIRE(type_of("t.i16") == ValueType::int16);
    REQUIRE(type_of("t.u32") == ValueType::uint32);
    REQUIRE(type_of("t.i32") == ValueType::int32);
    REQUIRE(type_of("t.f32") == ValueType::float32);
    REQUIRE(type_of("t.bool") == ValueType::boolean);
    REQUIRE(type_of("t.str") == ValueType::string);
    REQUIRE(type_of("t.array.u32") == ValueType::array);
    REQUIRE(type_of("t.u64") == ValueType::uint64);
    REQUIRE(type_of("t.i64") == ValueType::int64);
    REQUIRE(type_of("t.f64") == ValueType::float64);

    // Value accessors.
    REQUIRE(m.find("t.u8")->as_unsigned() == 254u);
    REQUIRE(m.find("t.i8")->as_signed() == -7);
    REQUIRE_FALSE(m.find("t.i8")->as_unsigned());
    REQUIRE(m.find("t.u16")->as_unsigned() == 65000u);
    REQUIRE(m.find("t.i16")->as_signed() == -30000);
    REQUIRE(m.find("t.u32")->as_unsigned() == 4000000000u);
    REQUIRE(m.find("t.i32")->as_signed() == -2000000000);
    REQUIRE(m.find("t.f32")->as_real() == double(f32_value));
    REQUIRE(m.find("t.bool")->as_bool() == true);
    REQUIRE(m.find("t.false")->as_bool() == false);
    REQUIRE(*m.find("t.str")->as_text() == "h\xc3\xa9llo");
    REQUIRE(m.find("t.empty")->as_text()->empty());
    REQUIRE(m.find("t.u64")->as_unsigned() == std::numeric_limits<std::uint64_t>::max());
    REQUIRE_FALSE(m.find("t.u64")->as_signed());
    REQUIRE(m.find("t.i64")->as_signed() == std::numeric_limits<std::int64_t>::min());
    REQUIRE(m.find("t.f64")->as_real() == f64_value);
    REQUIRE_FALSE(m.find("t.f64")->as_unsigned());
    REQUIRE_FALSE(m.find("t.str")->as_bool());
    REQUIRE(m.find("t.bool")->as_text() == nullptr);

    const Value& nested = *m.find("t.array.nested");
    REQUIRE(nested.element_type() == ValueType::array);
    REQUIRE(nested.type_text() == "array of array");
    REQUIRE(nested.elements().size() == 3);
    REQUIRE_FALSE(nested.as_unsigned());
    REQUIRE_FALSE(nested.as_signed());
    const Value& inner0 = nested.elements()[0];
    REQUIRE(inner0.type() == ValueType::array);
    REQUIRE(inner0.element_type() == ValueType::int16);
    REQUIRE(inner0.elements().size() == 2);
    REQUIRE(inner0.elements()[0].type() == ValueType::int16);
    REQUIRE(inner0.elements()[0].as_signed() == -1);
    REQUIRE(inner0.elements()[1].as_signed() == 2);
    REQUIRE(nested.elements()[1].element_type() == ValueType::string);
    REQUIRE(*nested.elements()[1].elements()[0].as_text() == "x");
    REQUIRE(nested.elements()[2].element_type() == ValueType::float64);
    REQUIRE(nested.elements()[2].elements().empty());

    // Typed getters.
    REQUIRE(m.text("t.str") == "h\xc3\xa9llo");
    REQUIRE(m.text("t.empty").empty());
    REQUIRE(m.unsigned_integer("t.u8") == 254);
    REQUIRE(m.unsigned_integer("t.u64") == std::numeric_limits<std::uint64_t>::max());
    REQUIRE(m.unsigned_integer("t.u32") == 4000000000u);
    REQUIRE(m.optional_real("t.f32") == double(f32_value));
    REQUIRE(m.optional_real("t.f64") == f64_value);
    REQUIRE(m.optional_bool("t.bool") == true);
    REQUIRE(m.optional_bool("t.false") == false);
    REQUIRE_FALSE(m.optional_bool("t.missing"));
    REQUIRE_FALSE(m.optional_text("t.missing"));
    REQUIRE_FALSE(m.optional_unsigned_integer("t.missing"));
    REQUIRE(m.texts("t.array.str") == std::vector<std::string>{"a", "", "ccc"});
    REQUIRE(m.integers("t.array.u32") == std::vector<std::int64_t>{1, 2, 0xFFFFFFFF});

    // Getter errors name the file and the key (or the element) and the type found.
    const std::string path = file.path().string();
    REQUIRE(m.source() == path);
    const auto check = [&](Refusal r, const std::string& field, const std::string& found) {
        CAPTURE(r.message);
        REQUIRE(r.field == field);
        REQUIRE_THAT(r.message, Contains(path) && Contains("'" + field + "'") && Contains(found));
    };
    check(format_error([&] { (void)m.unsigned_integer("t.i16"); }), "t.i16", "int16");
    check(format_error([&] { (void)m.unsigned_integer("t.f32"); }), "t.f32", "float32");
    check(format_error([&] { (void)m.unsigned_integer("t.missing"); }), "t.missing", "no such key");
    check(format_error([&] { (void)m.text("t.u8"); }), "t.u8", "uint8");
    check(format_error([&] { (void)m.text("t.missing"); }), "t.missing", "no such key");
    check(format_error([&] { (void)m.optional_real("t.u64"); }), "t.u64", "uint64");
    check(format_error([&] { (void)m.optional_bool("t.u8"); }), "t.u8", "uint8");
    check(format_error([&] { (void)m.texts("t.str"); }), "t.str", "string");
    check(format_error([&] { (void)m.texts("t.missing"); }), "t.missing", "no such key");
    check(format_error([&] { (void)m.reals("t.array.u32"); }), "t.array.u32[0]", "uint32");
    check(format_error([&] { (void)m.texts("t.array.u32"); }), "t.array.u32[0]", "uint32");
    check(format_error([&] { (void)m.integers("t.array.str"); }), "t.array.str[0]", "string");
    // An array element that is itself an array is not an integer.
    check(format_error([&] { (void)m.integers("t.array.nested"); }), "t.array.nested[0]", "array of int16");
}

TEST_CASE("GGUF: general.alignment places tensors, and data reads back as written", "[core][gguf]") {
    const Scratch scratch;
    std::uint64_t data_offset = 0;
    const Builder built = aligned_file(data_offset);
    REQUIRE(data_offset % 64 == 0);
    const File file(scratch.write(built.bytes()));
    REQUIRE(file.alignment() == 64);
    REQUIRE(file.data_offset() == data_offset);
    REQUIRE(file.metadata().text("general.name") == "tiny");
    REQUIRE(file.tensors().size() == 2);

    const TensorInfo& a = file.tensor("a");
    REQUIRE(&a == &file.tensors()[0]);
    REQUIRE(a.dims == std::vector<std::uint64_t>{3, 2});
    REQUIRE(a.type == TensorType::F32);
    REQUIRE(a.offset == 0);
    REQUIRE(a.elements == 6);
    REQUIRE(a.bytes == 24);
    REQUIRE(a.columns() == 3);
    REQUIRE(a.rows() == 2);
    REQUIRE(a.shape_text() == "[3, 2]");
    REQUIRE(as_string(file.data(a)) == built.bytes().substr(data_offset, 24));
    const auto a_read = file.to_float(a);
    REQUIRE(a_read.size() == a_values.size());
    for (std::size_t i = 0; i < a_values.size(); ++i) {
        REQUIRE(std::bit_cast<std::uint32_t>(a_read[i]) == std::bit_cast<std::uint32_t>(a_values[i]));
    }

    const TensorInfo& b = *file.find_tensor("b");
    REQUIRE(b.dims == std::vector<std::uint64_t>{5});
    REQUIRE(b.type == TensorType::F16);
    REQUIRE(b.offset == 64);
    REQUIRE(b.bytes == 10);
    REQUIRE(b.rows() == 1);
    REQUIRE(file.data(b).data() - file.data(a).data() == 64);
    REQUIRE(as_string(file.data(b)) == built.bytes().substr(data_offset + 64, 10));
    const auto b_read = file.to_float(b);
    for (std::size_t i = 0; i < b_values.size(); ++i) {
        REQUIRE(std::bit_cast<std::uint32_t>(b_read[i]) == std::bit_cast<std::uint32_t>(b_values[i]));
    }

    REQUIRE(file.find_tensor("c") == nullptr);
    const Refusal missing = format_error([&] { (void)file.tensor("c"); });
    REQUIRE(missing.field == "tensor c");
}

TEST_CASE("GGUF: the default alignment of 32, version 2, a type without float conversion", "[core][gguf]") {
    const Scratch scratch;
    for (std::uint32_t version : {2u, 3u}) {
        CAPTURE(version);
        Builder built;
        built.header(version, 2, 1).key("general.architecture", t_str).str("x");
        built.tensor_info("q", {32, 2}, ggml_q8_0, 0);  // 2 blocks of 34 bytes
        built.tensor_info("i", {3}, ggml_i32, 96);      // after 68 bytes padded to 96
        built.pad(32);
        const std::uint64_t data_offset = built.size();
        for (int block = 0; block < 2; ++block) {
            built.u16(block == 0 ? 0x3800 : 0xC000);  // d = 0.5, then -2
            for (int j = 0; j < 32; ++j) built.i8(static_cast<std::int8_t>(3 * j - 50));
        }
        built.pad(32).i32(-1).i32(7).i32(1 << 30).pad(32);

        const File file(scratch.write(built.bytes()));
        REQUIRE(file.version() == version);
        REQUIRE(file.alignment() == 32);
        REQUIRE(file.data_offset() == data_offset);
        const TensorInfo& q = file.tensor("q");
        REQUIRE(q.bytes == 68);
        const auto values = file.to_float(q);
        REQUIRE(values.size() == 64);
        for (int j = 0; j < 64; ++j) REQUIRE(values[j] == (j < 32 ? 0.5f : -2.0f) * float(3 * (j % 32) - 50));
        const TensorInfo& i = file.tensor("i");
        REQUIRE(i.offset == 96);
        REQUIRE(as_string(file.data(i)) == built.bytes().substr(data_offset + 96, 12));
        const Refusal r = format_error([&] { (void)file.to_float(i); });
        REQUIRE(r.field == "tensor i");
        REQUIRE_THAT(r.message, Contains("i32"));
    }
}

TEST_CASE("GGUF: a vocabulary-only file (no tensors, no padding)", "[core][gguf]") {
    const Scratch scratch;
    Builder built;
    built.header(3, 0, 4);
    built.key("tokenizer.ggml.model", t_str).str("gpt2");
    built.key("tokenizer.ggml.tokens", t_arr).array(t_str, 3).str("<unk>").str("\xc4\xa0the").str("");
    built.key("tokenizer.ggml.scores", t_arr).array(t_f32, 3).f32(0.0f).f32(-1.25f).f32(-1e9f);
    built.key("tokenizer.ggml.token_type", t_arr).array(t_i32, 3).i32(2).i32(1).i32(-3);
    REQUIRE(built.size() % 32 != 0);
    const auto path = scratch.write(built.bytes());
    REQUIRE(is_gguf_file(path));
    const File file(path);
    REQUIRE(file.tensors().empty());
    const Metadata& m = file.metadata();
    REQUIRE(m.text("tokenizer.ggml.model") == "gpt2");
    REQUIRE(m.texts("tokenizer.ggml.tokens") == std::vector<std::string>{"<unk>", "\xc4\xa0the", ""});
    REQUIRE(m.reals("tokenizer.ggml.scores") == std::vector<double>{0.0, -1.25, double(-1e9f)});
    REQUIRE(m.integers("tokenizer.ggml.token_type") == std::vector<std::int64_t>{2, 1, -3});
}

TEST_CASE("GGUF: is_gguf_file and files that cannot be opened", "[core][gguf]") {
    const Scratch scratch;
    REQUIRE_FALSE(is_gguf_file(scratch.write("GGUX" + std::string(20, '\0'), "x.gguf")));
    REQUIRE_FALSE(is_gguf_file(scratch.write("GG", "short.gguf")));
    REQUIRE_FALSE(is_gguf_file(scratch.dir() / "missing.gguf"));
    REQUIRE(is_gguf_file(scratch.write(all_types_file().bytes(), "ok.gguf")));
    // Not there, not a regular file: std::runtime_error naming the path. Empty: the magic is missing.
    REQUIRE_THROWS_AS(File(scratch.dir() / "missing.gguf"), std::runtime_error);
    REQUIRE_THROWS_WITH(File(scratch.dir() / "missing.gguf"), Contains("missing.gguf"));
    REQUIRE_THROWS_WITH(File(scratch.dir()), Contains("not a regular file"));
    REQUIRE(refusal(scratch, "").field == "magic");
}

// ---- 2. The writer.

TEST_CASE("GGUF writer: bytes equal the hand-built layout", "[core][gguf]") {
    const Scratch scratch;
    SECTION("metadata of every type, no tensors: padded to 32 after the key-value pairs") {
        const std::string expected = all_types_file().bytes();
        const File file(scratch.write(expected));
        REQUIRE(written_bytes(Writer(file.metadata())) == expected);
    }
    SECTION("general.alignment 64: infos with offsets, zeros after the infos and after each tensor") {
        std::uint64_t data_offset = 0;
        const std::string expected = aligned_file(data_offset).bytes();
        Metadata metadata;
        metadata.set("general.alignment", Value::uint32(64));
        metadata.set("general.name", Value::text("tiny"));
        Writer writer(metadata);
        writer.add_tensor("a", {3, 2}, TensorType::F32, as_bytes(expected.substr(data_offset, 24)));
        writer.add_tensor("b", {5}, TensorType::F16, as_bytes(expected.substr(data_offset + 64, 10)));
        REQUIRE(written_bytes(writer) == expected);
    }
    SECTION("the robustness file, written from what the reader read") {
        const std::string expected = robustness_file().bytes();
        const File file(scratch.write(expected));
        Writer writer(file.metadata());
        for (const TensorInfo& t : file.tensors()) {
            const auto data = file.data(t);
            writer.add_tensor(t.name, t.dims, t.type, {data.begin(), data.end()});
        }
        REQUIRE(written_bytes(writer) == expected);
    }
}

TEST_CASE("GGUF writer: files read back with the same metadata and tensors", "[core][gguf]") {
    const Scratch scratch;
    std::mt19937_64 rng(20240611);
    Metadata metadata;
    metadata.set("general.architecture", Value::text("llama"));
    metadata.set("u8", Value(ValueType::uint8, std::uint64_t{200}));
    metadata.set("i8", Value(ValueType::int8, std::int64_t{-128}));
    metadata.set("u16", Value(ValueType::uint16, std::uint64_t{65535}));
    metadata.set("i16", Value(ValueType::int16, std::int64_t{-32768}));
    metadata.set("u32", Value::uint32(0xFFFFFFFFu));
    metadata.set("i32", Value(ValueType::int32, std::int64_t{std::numeric_limits<std::int32_t>::min()}));
    metadata.set("u64", Value(ValueType::uint64, std::uint64_t{1} << 63));
    metadata.set("i64", Value(ValueType::int64, std::int64_t{-5}));
    metadata.set("f32", Value::float32(-3.25e-5f));
    metadata.set("f64", Value(ValueType::float64, 1.0 / 3.0));
    metadata.set("bool", Value::boolean(true));
    metadata.set("empty", Value::text(""));
    metadata.set("general.alignment", Value::uint32(128));
    metadata.set("strings", Value::array(ValueType::string, {Value::text("a"), Value::text(""), Value::text("bc")}));
    metadata.set("empty.array", Value::array(ValueType::uint8, {}));
    metadata.set("nested", Value::array(ValueType::array, {Value::array(ValueType::boolean, {Value::boolean(false)}),
                                                           Value::array(ValueType::float32, {})}));
    metadata.set("u8", Value(ValueType::uint8, std::uint64_t{7}));  // replaced in place

    struct Tensor {
        std::string name;
        std::vector<std::uint64_t> dims;
        TensorType type;
        std::size_t bytes;
    };
    const std::vector<Tensor> tensors = {{"f32", {7, 3}, TensorType::F32, 84},
                                         {"q1", {256, 2}, TensorType::Q1_0, 72},
                                         {"k", {256, 1, 1, 2}, TensorType::Q4_K, 288},
                                         {"i8", {3}, TensorType::I8, 3},
                                         {std::string(63, 'n'), {1}, TensorType::F16, 2}};
    Writer writer(metadata);
    std::vector<std::vector<std::byte>> data;
    for (const auto& t : tensors) {
        std::vector<std::byte> bytes(t.bytes);
        for (auto& b : bytes) b = std::byte(rng() & 0xFF);
        if (t.type == TensorType::F32) {  // finite floats, so that to_float can be compared with ==
            for (std::size_t e = 0; e < t.bytes; e += 4) {
                const float v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 8.0f;
                std::memcpy(bytes.data() + e, &v, 4);
            }
        }
        data.push_back(bytes);
        writer.add_tensor(t.name, t.dims, t.type, bytes);
    }
    const auto path = scratch.dir() / "written.gguf";
    writer.write(path);
    // Replaced atomically: only the file itself is left.
    REQUIRE(std::distance(std::filesystem::directory_iterator(scratch.dir()), {}) == 1);

    const File file(path);
    REQUIRE(file.version() == 3);
    REQUIRE(file.alignment() == 128);
    require_same_metadata(file.metadata(), metadata);
    REQUIRE(file.metadata().entries()[1].first == "u8");
    REQUIRE(file.metadata().unsigned_integer("u8") == 7);
    REQUIRE(file.tensors().size() == tensors.size());
    std::uint64_t offset = 0;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
        const TensorInfo& info = file.tensors()[t];
        CAPTURE(info.name);
        REQUIRE(info.name == tensors[t].name);
        REQUIRE(info.dims == tensors[t].dims);
        REQUIRE(info.type == tensors[t].type);
        REQUIRE(info.offset == offset);
        REQUIRE(info.bytes == tensors[t].bytes);
        REQUIRE(as_string(file.data(info)) == as_string(data[t]));
        if (can_dequantize(info.type)) {
            std::vector<float> expected(info.elements);
            dequantize(info.type, data[t], expected);
            const auto values = file.to_float(info);
            REQUIRE(values.size() == expected.size());
            for (std::size_t e = 0; e < values.size(); ++e) {
                REQUIRE((values[e] == expected[e] || (std::isnan(values[e]) && std::isnan(expected[e]))));
            }
        }
        offset += (tensors[t].bytes + 127) / 128 * 128;
    }
    REQUIRE(file.data_offset() % 128 == 0);
    REQUIRE(std::filesystem::file_size(path) == file.data_offset() + offset);
}

TEST_CASE("GGUF writer: refuses what it cannot write as a valid file", "[core][gguf]") {
    Metadata plain;
    plain.set("general.architecture", Value::text("llama"));
    Writer writer(plain);
    const std::vector<std::byte> f32x4(16);
    using Dims = std::vector<std::uint64_t>;
    REQUIRE_NOTHROW(writer.add_tensor("ok", {4}, TensorType::F32, f32x4));
    REQUIRE_THROWS_AS(writer.add_tensor("ok", {4}, TensorType::F32, f32x4), std::invalid_argument);  // twice
    REQUIRE_THROWS_AS(writer.add_tensor(std::string(64, 'n'), {4}, TensorType::F32, f32x4), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("a", Dims{}, TensorType::F32, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("b", {4, 1, 1, 1, 1}, TensorType::F32, f32x4), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("c", {4, 0}, TensorType::F32, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("d", {5}, TensorType::F32, f32x4), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("e", {4}, static_cast<TensorType>(4), f32x4), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("f", {16}, TensorType::Q4_0, f32x4), std::invalid_argument);  // not 32n
    // Element counts or sizes that wrap around 2^64 must not pass for an empty tensor.
    REQUIRE_THROWS_AS(writer.add_tensor("g", {1ull << 32, 1ull << 32}, TensorType::F32, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("h", {1ull << 62}, TensorType::F32, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(writer.add_tensor("i", {1ull << 62, 4}, TensorType::I8, {}), std::invalid_argument);

    const auto refused = [](const std::string& key, Value value) {
        Metadata m;
        m.set(key, std::move(value));
        REQUIRE_THROWS_WITH(Writer(m), Contains(key));
        REQUIRE_THROWS_AS(Writer(m), std::invalid_argument);
    };
    refused("general.alignment", Value(ValueType::uint64, std::uint64_t{64}));
    refused("general.alignment", Value::uint32(48));
    refused("general.alignment", Value::uint32(0));
    // Values that would not read back as given.
    refused("small", Value(ValueType::uint8, std::uint64_t{256}));
    refused("small", Value(ValueType::int16, std::int64_t{-40000}));
    refused("small", Value(ValueType::uint32, std::int64_t{5}));  // held as the wrong kind
    refused("text", Value(ValueType::string, std::uint64_t{5}));
    refused("mixed", Value::array(ValueType::uint32, {Value::uint32(1), Value::text("x")}));
    refused("type", Value(static_cast<ValueType>(13), std::uint64_t{0}));
    const auto nest = [](int levels) {
        Value v = Value::array(ValueType::uint8, {Value(ValueType::uint8, std::uint64_t{1})});
        for (int l = 1; l < levels; ++l) v = Value::array(ValueType::array, {v});
        return v;
    };
    refused("deep", nest(max_array_depth + 1));
    Metadata deep;
    deep.set("deep", nest(max_array_depth));
    REQUIRE_NOTHROW(Writer(deep));
}

// ---- 3. Malformed files: a FormatError naming the field, the key or the tensor.

namespace {

// One tensor "w" after `keys` (whose count is given), then `data_bytes` zeros at the data section.
std::string one_tensor_file(const std::vector<std::uint64_t>& dims, std::uint32_t type, std::uint64_t offset,
                            std::size_t data_bytes, std::string_view name = "w") {
    Builder b;
    b.header(3, 1, 0).tensor_info(name, dims, type, offset).pad(32).zeros(data_bytes);
    return b.bytes();
}

void require_refused(const Scratch& scratch, const std::string& bytes, const std::string& field,
                     const std::string& also = "") {
    const Refusal r = refusal(scratch, bytes);
    CAPTURE(r.message);
    REQUIRE(r.field == field);
    REQUIRE_THAT(r.message, Contains("'" + field + "'") && Contains(also));
}

}  // namespace

TEST_CASE("GGUF errors: header", "[core][gguf]") {
    const Scratch scratch;
    Builder bad_magic;
    bad_magic.raw("GGUX").u32(3).u64(0).u64(0);
    require_refused(scratch, bad_magic.bytes(), "magic", "GGUX");
    for (std::uint32_t version : {0u, 1u, 4u}) {
        Builder b;
        b.header(version, 0, 0);
        require_refused(scratch, b.bytes(), "version", "found " + std::to_string(version));
    }
    for (std::uint32_t swapped : {0x02000000u, 0x03000000u}) {
        Builder b;
        b.header(swapped, 0, 0);
        require_refused(scratch, b.bytes(), "version", "big-endian");
    }
    Builder huge_keys;
    huge_keys.header(3, 0, 1ull << 60).zeros(64);
    require_refused(scratch, huge_keys.bytes(), "metadata count");
    Builder huge_tensors;
    huge_tensors.header(3, std::numeric_limits<std::uint64_t>::max(), 0).zeros(64);
    require_refused(scratch, huge_tensors.bytes(), "tensor count");
    Builder truncated_header;
    truncated_header.header(3, 0, 0);
    require_refused(scratch, truncated_header.bytes().substr(0, 20), "metadata count", "ending");
}

TEST_CASE("GGUF errors: metadata", "[core][gguf]") {
    const Scratch scratch;
    const auto file_with = [](const std::function<void(Builder&)>& keys, std::uint64_t count = 1) {
        Builder b;
        b.header(3, 0, count);
        keys(b);
        return b.zeros(16).bytes();
    };
    require_refused(scratch, file_with([](Builder& b) { b.key("k", 13).u32(0); }), "k type", "13");
    require_refused(scratch, file_with([](Builder& b) { b.key("k", 0xFFFFFFFF).u32(0); }), "k type");
    require_refused(scratch, file_with([](Builder& b) { b.key("k", t_arr).array(13, 1).u32(0); }), "k element type",
                    "13");
    require_refused(scratch, file_with([](Builder& b) { b.key("flag", t_bool).u8(2); }), "flag", "0 or 1");
    require_refused(scratch, file_with([](Builder& b) { b.key("flags", t_arr).array(t_bool, 2).u8(1).u8(0xFF); }),
                    "flags", "255");
    // Huge counts and lengths are refused before anything is allocated for them.
    require_refused(scratch, file_with([](Builder& b) { b.key("big", t_arr).array(t_u8, 1ull << 62); }), "big count");
    require_refused(scratch, file_with([](Builder& b) { b.key("big", t_arr).array(t_str, ~0ull); }), "big count");
    require_refused(scratch, file_with([](Builder& b) { b.key("big", t_arr).array(t_arr, 1ull << 40); }), "big count");
    require_refused(scratch, file_with([](Builder& b) { b.key("big", t_arr).array(t_u64, 3); }), "big count");
    require_refused(scratch, file_with([](Builder& b) { b.key("s", t_str).u64(1ull << 63); }), "s", "more bytes");
    require_refused(scratch, file_with([](Builder& b) { b.u64(~0ull); }), "metadata key 0", "more bytes");
    require_refused(scratch, file_with([](Builder& b) { b.key("k", t_arr).array(t_str, 2).str("a").u64(1ull << 50); }),
                    "k", "more bytes");
    require_refused(scratch,
                    file_with(
                        [](Builder& b) {
                            b.key("dup", t_u8).u8(1);
                            b.key("other", t_u8).u8(2);
                            b.key("dup", t_str).str("again");
                        },
                        3),
                    "dup", "duplicate");
    // general.alignment: a uint32 power of two.
    require_refused(scratch, file_with([](Builder& b) { b.key("general.alignment", t_u64).u64(64); }),
                    "general.alignment", "uint64");
    require_refused(scratch, file_with([](Builder& b) { b.key("general.alignment", t_i32).i32(32); }),
                    "general.alignment", "int32");
    require_refused(scratch, file_with([](Builder& b) { b.key("general.alignment", t_u32).u32(48); }),
                    "general.alignment", "48");
    require_refused(scratch, file_with([](Builder& b) { b.key("general.alignment", t_u32).u32(0); }),
                    "general.alignment", "found 0");
    // Arrays nest at most max_array_depth deep.
    const auto nested = [](int levels) {
        return [levels](Builder& b) {
            b.key("deep", t_arr);
            for (int l = 1; l < levels; ++l) b.array(t_arr, 1);
            b.array(t_u8, 1).u8(9);
        };
    };
    require_refused(scratch, file_with(nested(max_array_depth + 1)), "deep", "nested");
    const File ok(scratch.write(file_with(nested(max_array_depth))));
    const Value* v = ok.metadata().find("deep");
    for (int l = 1; l < max_array_depth; ++l) v = &v->elements()[0];
    REQUIRE(v->element_type() == ValueType::uint8);
    REQUIRE(v->elements()[0].as_unsigned() == 9);
}

TEST_CASE("GGUF errors: tensor infos and data", "[core][gguf]") {
    const Scratch scratch;
    REQUIRE_NOTHROW(File(scratch.write(one_tensor_file({8}, ggml_f32, 0, 32))));
    require_refused(scratch, one_tensor_file({}, ggml_f32, 0, 32), "tensor w dimension count", "found 0");
    require_refused(scratch, one_tensor_file({8, 1, 1, 1, 1}, ggml_f32, 0, 32), "tensor w dimension count", "found 5");
    require_refused(scratch, one_tensor_file({8, 0}, ggml_f32, 0, 32), "tensor w dimension 1");
    require_refused(scratch, one_tensor_file({1ull << 32, 1ull << 32}, ggml_f32, 0, 32), "tensor w dimension 1");
    require_refused(scratch, one_tensor_file({2, 1ull << 62}, ggml_f32, 0, 32), "tensor w dimension 1");
    require_refused(scratch, one_tensor_file({1ull << 62}, ggml_f64, 0, 32), "tensor w", "2^64");
    for (std::uint32_t type : {4u, 5u, 31u, 43u, 0xFFFFFFFFu}) {
        require_refused(scratch, one_tensor_file({8}, type, 0, 32), "tensor w type", std::to_string(type));
    }
    require_refused(scratch, one_tensor_file({33, 1}, ggml_q4_0, 0, 64), "tensor w dimension 0", "32");
    require_refused(scratch, one_tensor_file({64}, ggml_q1_0, 0, 64), "tensor w dimension 0", "128");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, 16, 64), "tensor w offset", "16");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, 0, 31), "tensor w", "data section of 31 bytes");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, 32, 63), "tensor w", "offset 32");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, 1ull << 63, 32), "tensor w");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, ~0ull - 31, 32), "tensor w");
    require_refused(scratch, one_tensor_file({8}, ggml_f32, 0, 32, std::string(64, 'x')), "tensor 0 name", "64 bytes");
    REQUIRE_NOTHROW(File(scratch.write(one_tensor_file({8}, ggml_f32, 0, 32, std::string(63, 'x')))));
    {
        Builder b;
        b.header(3, 2, 0).tensor_info("w", {8}, ggml_f32, 0).tensor_info("w", {8}, ggml_f32, 32).pad(32).zeros(64);
        require_refused(scratch, b.bytes(), "tensor w", "unique");
    }
    {
        Builder b;  // general.alignment 64 makes offset 32 unaligned
        b.header(3, 1, 1).key("general.alignment", t_u32).u32(64).tensor_info("w", {8}, ggml_f32, 32).pad(64);
        require_refused(scratch, b.zeros(128).bytes(), "tensor w offset", "64");
    }
    {
        Builder b;  // a huge tensor name length
        b.header(3, 1, 0).u64(1ull << 62).zeros(64);
        require_refused(scratch, b.bytes(), "tensor 0 name", "more bytes");
    }
}

// ---- 4. Robustness: truncations and corruptions never crash and never throw anything else.

namespace {

enum class Outcome { opened, refused };

// Opens the file; if it opens, checks that every tensor's bytes lie inside the file, equal the
// file's bytes there, and convert. Fails on any exception but FormatError / std::runtime_error.
Outcome open_checked(const std::filesystem::path& path, const std::string& bytes) {
    try {
        const File file(path);
        for (const TensorInfo& t : file.tensors()) {
            if (file.data_offset() % file.alignment() != 0 || t.offset > bytes.size() ||
                t.bytes > bytes.size() - t.offset || file.data_offset() > bytes.size() - t.offset - t.bytes) {
                FAIL("tensor " << t.name << " lies outside the file");
            }
            const auto data = file.data(t);
            if (data.size() != t.bytes || as_string(data) != bytes.substr(file.data_offset() + t.offset, t.bytes)) {
                FAIL("tensor " << t.name << " does not read the file's bytes");
            }
            if (can_dequantize(t.type) && file.to_float(t).size() != t.elements) FAIL("to_float " << t.name);
        }
        for (const auto& [key, value] : file.metadata().entries()) (void)value.type_text();
        return Outcome::opened;
    } catch (const std::runtime_error&) {  // FormatError is one
        return Outcome::refused;
    } catch (const std::exception& e) {
        FAIL("unexpected " << typeid(e).name() << ": " << e.what());
    } catch (...) {
        FAIL("unexpected non-standard exception");
    }
    return Outcome::refused;
}

}  // namespace

TEST_CASE("GGUF robustness: every truncation is refused", "[core][gguf]") {
    const Scratch scratch;
    const std::string bytes = robustness_file().bytes();
    REQUIRE(open_checked(scratch.write(bytes), bytes) == Outcome::opened);
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        CAPTURE(length);
        const std::string prefix = bytes.substr(0, length);
        const auto path = scratch.write(prefix);
        REQUIRE(open_checked(path, prefix) == Outcome::refused);
        const Refusal r = refusal(scratch, prefix);  // a FormatError, not another runtime_error
        REQUIRE_FALSE(r.field.empty());
    }
}

TEST_CASE("GGUF robustness: single-byte corruptions open consistently or are refused", "[core][gguf]") {
    const Scratch scratch;
    const std::string bytes = robustness_file().bytes();
    std::size_t opened = 0;
    std::size_t refused = 0;
    const auto trial = [&](const std::string& corrupt) {
        (open_checked(scratch.write(corrupt), corrupt) == Outcome::opened ? opened : refused) += 1;
    };
    for (std::size_t at = 0; at < bytes.size(); ++at) {
        for (unsigned mask : {0x01u, 0x02u, 0x08u, 0x40u, 0x80u, 0xFFu}) {
            CAPTURE(at, mask);
            std::string corrupt = bytes;
            corrupt[at] = static_cast<char>(static_cast<unsigned char>(corrupt[at]) ^ mask);
            trial(corrupt);
        }
    }
    const std::uint64_t seed = 7;
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (int t = 0; t < 2000; ++t) {
        std::string corrupt = bytes;
        const std::size_t at = rng() % bytes.size();
        corrupt[at] = static_cast<char>(rng() & 0xFF);
        CAPTURE(t, at);
        trial(corrupt);
    }
    // Both outcomes occur: the data and some metadata values can change freely, the structure cannot.
    REQUIRE(opened > 0);
    REQUIRE(refused > 0);
}

// ---- 5. Q1_0 blocks and BitPlaneMatrix<1, 128, half>.

namespace {

// The hand-made layout: per block, the fp16 scale, then sign j at bit j % 8 of byte j / 8.
std::uint16_t chosen_scale(std::size_t i, std::size_t g) {
    return static_cast<std::uint16_t>((i % 2 ? 0x8000 : 0) | ((14 + i) << 10) | (g * 37 + i * 5));
}
bool chosen_sign(std::size_t i, std::size_t g, std::size_t j) { return (j * 7 + i * 3 + g * 5) % 11 < 5; }

std::vector<std::byte> chosen_blocks(std::size_t rows, std::size_t cols) {
    Builder b;
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t g = 0; g < cols / 128; ++g) {
            b.u16(chosen_scale(i, g));
            for (std::size_t byte = 0; byte < 16; ++byte) {
                unsigned bits = 0;
                for (std::size_t bit = 0; bit < 8; ++bit) bits |= (chosen_sign(i, g, 8 * byte + bit) ? 1u : 0u) << bit;
                b.u8(static_cast<std::uint8_t>(bits));
            }
        }
    }
    return as_bytes(b.bytes());
}

std::vector<std::byte> random_blocks(std::size_t blocks, std::mt19937_64& rng) {
    std::vector<std::byte> out(blocks * 18);
    for (auto& b : out) b = std::byte(rng() & 0xFF);
    for (std::size_t k = 0; k < blocks; ++k) {  // finite scales: exponent field below 31
        if ((std::to_integer<unsigned>(out[k * 18 + 1]) & 0x7C) == 0x7C) out[k * 18 + 1] &= std::byte{0xFB};
    }
    return out;
}

}  // namespace

TEMPLATE_TEST_CASE("Q1_0: blocks become planes and scales by position", "[core][gguf][q1_0]", std::uint64_t,
                   std::uint32_t, std::uint16_t, std::uint8_t) {
    constexpr std::size_t rows = 3;
    constexpr std::size_t cols = 384;
    const auto blocks = chosen_blocks(rows, cols);
    REQUIRE(blocks.size() == rows * 3 * 18);
    const auto m = q1_0_matrix<TestType>(blocks, rows, cols);
    REQUIRE(m.rows() == rows);
    REQUIRE(m.cols() == cols);
    const auto dense = m.dequantize();
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t g = 0; g < cols / 128; ++g) {
            REQUIRE(m.scale(0, i, g).bits() == chosen_scale(i, g));
            for (std::size_t j = 0; j < 128; ++j) {
                const std::size_t column = g * 128 + j;
                REQUIRE(m.sign(0, i, column) == (chosen_sign(i, g, j) ? 1 : -1));
                const double expected = (chosen_sign(i, g, j) ? 1.0 : -1.0) * fp16_value(chosen_scale(i, g));
                REQUIRE(double(dense[i * cols + column]) == expected);
            }
        }
    }
    REQUIRE(q1_0_blocks(m) == blocks);
}

TEMPLATE_TEST_CASE("Q1_0: random blocks round-trip byte for byte and equal ggml's dequantization", "[core][gguf][q1_0]",
                   std::uint64_t, std::uint8_t) {
    const std::uint64_t seed = 99;
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{1, 128}, {5, 384}, {2, 1024}}) {
        CAPTURE(rows, cols);
        const auto blocks = random_blocks(rows * cols / 128, rng);
        const auto m = q1_0_matrix<TestType>(blocks, rows, cols);
        REQUIRE(q1_0_blocks(m) == blocks);
        std::vector<float> ggml(rows * cols);
        dequantize(TensorType::Q1_0, blocks, ggml);
        const auto dense = m.dequantize();
        for (std::size_t e = 0; e < dense.size(); ++e) REQUIRE(dense[e] == ggml[e]);
    }
}

TEST_CASE("Q1_0: a GGUF tensor read straight into planes", "[core][gguf][q1_0]") {
    const Scratch scratch;
    const auto blocks = chosen_blocks(3, 256);
    Metadata metadata;
    metadata.set("general.architecture", Value::text("llama"));
    Writer writer(metadata);
    writer.add_tensor("blk.0.attn_q.weight", {256, 3}, TensorType::Q1_0, blocks);
    const auto path = scratch.dir() / "q1.gguf";
    writer.write(path);
    const File file(path);
    const TensorInfo& info = file.tensor("blk.0.attn_q.weight");
    const auto m = q1_0_matrix(file.data(info), info.rows(), info.columns());
    REQUIRE(q1_0_blocks(m) == blocks);
    const auto values = file.to_float(info);
    REQUIRE(m.dequantize() == values);
}

TEST_CASE("Q1_0: bad sizes and non-finite scales are refused", "[core][gguf][q1_0]") {
    std::mt19937_64 rng(5);
    const auto blocks = random_blocks(4, rng);  // 72 bytes: 1 x 512, 2 x 256, 4 x 128
    REQUIRE_NOTHROW(q1_0_matrix(blocks, 2, 256));
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, 2, 100), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, 1, 0), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, 3, 256), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, 1, 256), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(std::span(blocks).first(71), 2, 256), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, std::numeric_limits<std::size_t>::max() / 2, 128), std::invalid_argument);
    REQUIRE_THROWS_AS(q1_0_matrix(blocks, std::numeric_limits<std::size_t>::max() / 18 + 1, 128),
                      std::invalid_argument);
    for (std::uint16_t bad : {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF}) {
        auto with_bad = blocks;
        with_bad[2 * 18] = std::byte(bad & 0xFF);
        with_bad[2 * 18 + 1] = std::byte(bad >> 8);
        CAPTURE(bad);
        REQUIRE_THROWS_AS(q1_0_matrix(with_bad, 2, 256), std::invalid_argument);
        REQUIRE_THROWS_AS(q1_0_matrix<std::uint8_t>(with_bad, 4, 128), std::invalid_argument);
    }
    REQUIRE_THROWS_AS(q1_0_blocks(Q1_0Matrix<>(2, 100)), std::invalid_argument);
    REQUIRE(q1_0_blocks(Q1_0Matrix<>(2, 256)).size() == 72);
}
