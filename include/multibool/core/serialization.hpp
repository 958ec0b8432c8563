#pragma once
// The versioned binary record of one BitPlaneMatrix (all fields little-endian):
//   magic "MBOOLBPM" | u32 version | u32 kernels | u32 group_size (0 = per row) | u32 word_bits
//   | u32 scale_type (1 = float32, 2 = float64, 3 = IEEE binary16, 4 = bfloat16) | u64 rows | u64 cols
//   | u64 payload_bytes
//   | payload: plane words (kernel, row, word) then scales (kernel, row, group) | u64 FNV-1a checksum
// Records can follow one another in a stream, so model files reuse them.
#include <array>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/half.hpp"

namespace multibool {

inline constexpr std::array<char, 8> bit_plane_matrix_magic{'M', 'B', 'O', 'O', 'L', 'B', 'P', 'M'};
inline constexpr std::uint32_t bit_plane_matrix_format_version = 1;

template <ScaleType Scale>
constexpr std::uint32_t scale_type_code() {
    if constexpr (std::is_same_v<Scale, float>) {
        return 1;
    } else if constexpr (std::is_same_v<Scale, double>) {
        return 2;
    } else if constexpr (std::is_same_v<Scale, half>) {
        return 3;
    } else {
        static_assert(std::is_same_v<Scale, bfloat16>);
        return 4;
    }
}

namespace detail {

// One u32 field of a record's header that fixes the matrix type: its name in errors and the value
// for the type being written or read.
struct TypeField {
    const char* name;
    std::uint32_t value;
};

// The header of every matrix record, from one list of type fields per format so that writer and
// reader cannot disagree: magic | u32 version | u32 type fields | u64 rows | u64 cols | u64 payload_bytes.
template <std::size_t N>
void write_record_header(BinaryWriter& w, const std::array<char, 8>& magic, std::uint32_t version,
                         const std::array<TypeField, N>& type, std::size_t rows, std::size_t cols,
                         std::size_t payload_bytes) {
    w.write(std::span<const char>(magic));
    w.write(version);
    for (const TypeField& field : type) w.write(field.value);
    w.write(std::uint64_t{rows});
    w.write(std::uint64_t{cols});
    w.write(std::uint64_t{payload_bytes});
}

// MBOOLBPM's type fields: kernels, group_size (0 = per row), word_bits, scale_type.
template <class Matrix>
constexpr std::array<TypeField, 4> bit_plane_matrix_type_fields() noexcept {
    static_assert(Matrix::group_size_parameter <= std::numeric_limits<std::uint32_t>::max(),
                  "multibool files store group sizes below 2^32");
    return {{{"kernels", static_cast<std::uint32_t>(Matrix::kernels)},
             {"group_size", static_cast<std::uint32_t>(Matrix::group_size_parameter)},
             {"word_bits", static_cast<std::uint32_t>(Matrix::word_bits)},
             {"scale_type", scale_type_code<typename Matrix::scale_type>()}}};
}

}  // namespace detail

template <std::size_t K, std::size_t G, class Scale, class Word>
void save(const BitPlaneMatrix<K, G, Scale, Word>& m, std::ostream& out) {
    BinaryWriter w(out);
    detail::write_record_header(w, bit_plane_matrix_magic, bit_plane_matrix_format_version,
                                detail::bit_plane_matrix_type_fields<BitPlaneMatrix<K, G, Scale, Word>>(), m.rows(),
                                m.cols(), m.storage_bytes());
    w.write(m.words());
    w.write(m.scale_data());
    w.write_checksum();
}

template <std::size_t K, std::size_t G, class Scale, class Word>
void save(const BitPlaneMatrix<K, G, Scale, Word>& m, const std::filesystem::path& path) {
    write_file_atomically(path, [&](std::ostream& out) { save(m, out); });
}

namespace detail {

// A record's rows and cols, each at most 2^31 as every multibool format promises, and no rows
// without columns.
// A named struct rather than a pair: readers capture it in lambdas (clang 14 cannot capture
// structured bindings).
struct RecordShape {
    std::size_t rows;
    std::size_t cols;
};

// Reads a header written by write_record_header up to the shape, refusing (FormatError, on the
// field's name) another magic, version or type.
template <std::size_t N>
RecordShape read_record_header(BinaryReader& r, const std::array<char, 8>& magic, std::uint32_t version,
                               const std::array<TypeField, N>& type) {
    r.expect_magic(magic);
    r.expect("version", r.read<std::uint32_t>("version"), version);
    for (const TypeField& field : type) r.expect(field.name, r.read<std::uint32_t>(field.name), field.value);
    constexpr std::uint64_t max_dim = std::uint64_t{1} << 31;
    const auto rows = r.read<std::uint64_t>("rows");
    const auto cols = r.read<std::uint64_t>("cols");
    for (const auto& [field, value] : {std::pair{"rows", rows}, std::pair{"cols", cols}}) {
        if (value > max_dim) {
            throw FormatError(r.source(), field, "at most " + std::to_string(max_dim), std::to_string(value));
        }
    }
    // Rows without columns hold no payload, so nothing else in the record would bound them.
    if (rows != 0 && cols == 0) {
        throw FormatError(r.source(), "cols", "at least 1 for a matrix with rows", "0 with " + std::to_string(rows));
    }
    return {static_cast<std::size_t>(rows), static_cast<std::size_t>(cols)};
}

// Runs `step` on what a file claims, turning the error a claim can cause into a FormatError on
// `field`: storage sizes (std::length_error) or the matrix constructor's checks
// (std::invalid_argument).
template <class Error, class Step>
auto as_format_error(const std::string& source, const char* field, const char* expected, Step&& step) {
    try {
        return step();
    } catch (const Error& e) {
        throw FormatError(source, field, expected, e.what());
    }
}

// A file that holds exactly one record, read by load_record(stream, source), and nothing after it.
template <class LoadRecord>
auto load_single_record(const std::filesystem::path& path, LoadRecord&& load_record) {
    auto in = open_for_reading(path);
    auto m = load_record(in, path.string());
    if (in.peek() != std::char_traits<char>::eof()) {
        throw FormatError(path.string(), "end of file", "no bytes after the checksum", "trailing bytes");
    }
    return m;
}

}  // namespace detail

// Reads one record written for exactly this Matrix type; source names the file in errors.
template <class Matrix>
Matrix load(std::istream& in, const std::string& source) {
    using Word = typename Matrix::word_type;
    using Scale = typename Matrix::scale_type;
    BinaryReader r(in, source);
    const detail::RecordShape shape = detail::read_record_header(
        r, bit_plane_matrix_magic, bit_plane_matrix_format_version, detail::bit_plane_matrix_type_fields<Matrix>());
    const auto [word_count, scale_count] =
        detail::as_format_error<std::length_error>(source, "rows, cols", "a shape whose storage fits in memory", [&] {
            return std::pair{Matrix::word_count(shape.rows, shape.cols), Matrix::scale_count(shape.rows, shape.cols)};
        });
    r.expect("payload_bytes", r.read<std::uint64_t>("payload_bytes"),
             std::uint64_t{word_count * sizeof(Word) + scale_count * sizeof(Scale)});
    auto words = r.read_vector<Word>(word_count, "payload (plane words)");
    auto scales = r.read_vector<Scale>(scale_count, "payload (scales)");
    r.verify_checksum();
    return detail::as_format_error<std::invalid_argument>(source, "payload", "a valid matrix", [&] {
        return Matrix(shape.rows, shape.cols, std::move(words), std::move(scales));
    });
}

template <class Matrix>
Matrix load(const std::filesystem::path& path) {
    return detail::load_single_record(
        path, [](std::istream& in, const std::string& source) { return load<Matrix>(in, source); });
}

}  // namespace multibool
