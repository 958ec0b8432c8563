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

template <std::size_t K, std::size_t G, class Scale, class Word>
void save(const BitPlaneMatrix<K, G, Scale, Word>& m, std::ostream& out) {
    static_assert(G <= std::numeric_limits<std::uint32_t>::max(), "multibool files store group sizes below 2^32");
    BinaryWriter w(out);
    w.write(std::span<const char>(bit_plane_matrix_magic));
    w.write(bit_plane_matrix_format_version);
    w.write(std::uint32_t{K});
    w.write(static_cast<std::uint32_t>(G));
    w.write(static_cast<std::uint32_t>(m.word_bits));
    w.write(scale_type_code<Scale>());
    w.write(std::uint64_t{m.rows()});
    w.write(std::uint64_t{m.cols()});
    w.write(std::uint64_t{m.storage_bytes()});
    w.write(m.words());
    w.write(m.scale_data());
    w.write_checksum();
}

template <std::size_t K, std::size_t G, class Scale, class Word>
void save(const BitPlaneMatrix<K, G, Scale, Word>& m, const std::filesystem::path& path) {
    write_file_atomically(path, [&](std::ostream& out) { save(m, out); });
}

namespace detail {

// A record's rows and cols, each at most 2^31 as every multibool format promises.
// A named struct rather than a pair: readers capture it in lambdas (clang 14 cannot capture
// structured bindings).
struct RecordShape {
    std::size_t rows;
    std::size_t cols;
};

inline RecordShape read_record_shape(BinaryReader& r) {
    constexpr std::uint64_t max_dim = std::uint64_t{1} << 31;
    const auto rows = r.read<std::uint64_t>("rows");
    const auto cols = r.read<std::uint64_t>("cols");
    for (const auto& [field, value] : {std::pair{"rows", rows}, std::pair{"cols", cols}}) {
        if (value > max_dim) {
            throw FormatError(r.source(), field, "at most " + std::to_string(max_dim), std::to_string(value));
        }
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
    r.expect_magic(bit_plane_matrix_magic);
    r.expect("version", r.read<std::uint32_t>("version"), bit_plane_matrix_format_version);
    r.expect("kernels", r.read<std::uint32_t>("kernels"), static_cast<std::uint32_t>(Matrix::kernels));
    r.expect("group_size", r.read<std::uint32_t>("group_size"),
             static_cast<std::uint32_t>(Matrix::group_size_parameter));
    r.expect("word_bits", r.read<std::uint32_t>("word_bits"), static_cast<std::uint32_t>(Matrix::word_bits));
    r.expect("scale_type", r.read<std::uint32_t>("scale_type"), scale_type_code<Scale>());
    const detail::RecordShape shape = detail::read_record_shape(r);
    const auto [word_count, scale_count] =
        detail::as_format_error<std::length_error>(source, "rows, cols", "a shape whose storage fits in memory", [&] {
            return std::pair{Matrix::word_count(shape.rows, shape.cols), Matrix::scale_count(shape.rows, shape.cols)};
        });
    r.expect("payload_bytes", r.read<std::uint64_t>("payload_bytes"),
             std::uint64_t{word_count * sizeof(Word) + scale_count * sizeof(Scale)});
    auto words = r.read_vector<Word>(word_count, "payload (plane words)");
    auto scales = r.read_vector<Scale>(scale_count, "payload (scales)");
    r.verify_checksum();
    return detail::as_format_error<std::invalid_argument>(
        source, "payload", "a valid matrix", [&] { return Matrix(shape.rows, shape.cols, std::move(words), std::move(scales)); });
}

template <class Matrix>
Matrix load(const std::filesystem::path& path) {
    return detail::load_single_record(
        path, [](std::istream& in, const std::string& source) { return load<Matrix>(in, source); });
}

}  // namespace multibool
