#pragma once
// The versioned binary record of one RowColumnMatrix (all fields little-endian):
//   magic "MBOOLRCM" | u32 version | u32 kernels | u32 word_bits | u32 scale_type (as MBOOLBPM)
//   | u64 rows | u64 cols | u64 payload_bytes
//   | payload: plane words (kernel, row, word), row scales (kernel, row), column scales (kernel, col)
//   | u64 FNV-1a checksum
// Like MBOOLBPM records, these can follow one another in a stream.
#include <array>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <ostream>
#include <string>
#include <tuple>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/row_column_matrix.hpp"
#include "multibool/core/serialization.hpp"

namespace multibool {

inline constexpr std::array<char, 8> row_column_matrix_magic{'M', 'B', 'O', 'O', 'L', 'R', 'C', 'M'};
inline constexpr std::uint32_t row_column_matrix_format_version = 1;

namespace detail {

// MBOOLRCM's type fields: kernels, word_bits, scale_type (no group size: scales are per row and column).
template <class Matrix>
constexpr std::array<TypeField, 3> row_column_matrix_type_fields() noexcept {
    return {{{"kernels", static_cast<std::uint32_t>(Matrix::kernels)},
             {"word_bits", static_cast<std::uint32_t>(Matrix::word_bits)},
             {"scale_type", scale_type_code<typename Matrix::scale_type>()}}};
}

}  // namespace detail

template <std::size_t K, class Scale, class Word>
void save(const RowColumnMatrix<K, Scale, Word>& m, std::ostream& out) {
    BinaryWriter w(out);
    detail::write_record_header(w, row_column_matrix_magic, row_column_matrix_format_version,
                                detail::row_column_matrix_type_fields<RowColumnMatrix<K, Scale, Word>>(), m.rows(),
                                m.cols(), m.storage_bytes());
    w.write(m.words());
    w.write(m.row_scale_data());
    w.write(m.column_scale_data());
    w.write_checksum();
}

template <std::size_t K, class Scale, class Word>
void save(const RowColumnMatrix<K, Scale, Word>& m, const std::filesystem::path& path) {
    write_file_atomically(path, [&](std::ostream& out) { save(m, out); });
}

// Reads one record written for exactly this Matrix type; source names the file in errors.
// Overload resolution picks it over serialization.hpp's MBOOLBPM load: it is more constrained.
template <class Matrix>
Matrix load(std::istream& in, const std::string& source) requires is_row_column_matrix<Matrix> {
    using Word = typename Matrix::word_type;
    using Scale = typename Matrix::scale_type;
    BinaryReader r(in, source);
    const detail::RecordShape shape = detail::read_record_header(
        r, row_column_matrix_magic, row_column_matrix_format_version, detail::row_column_matrix_type_fields<Matrix>());
    const auto [word_count, row_scale_count, column_scale_count] =
        detail::as_format_error<std::length_error>(source, "rows, cols", "a shape whose storage fits in memory", [&] {
            return std::tuple{Matrix::word_count(shape.rows, shape.cols), Matrix::row_scale_count(shape.rows),
                              Matrix::column_scale_count(shape.cols)};
        });
    r.expect("payload_bytes", r.read<std::uint64_t>("payload_bytes"),
             std::uint64_t{word_count * sizeof(Word) + (row_scale_count + column_scale_count) * sizeof(Scale)});
    auto words = r.read_vector<Word>(word_count, "payload (plane words)");
    auto row_scales = r.read_vector<Scale>(row_scale_count, "payload (row scales)");
    auto column_scales = r.read_vector<Scale>(column_scale_count, "payload (column scales)");
    r.verify_checksum();
    return detail::as_format_error<std::invalid_argument>(source, "payload", "a valid matrix", [&] {
        return Matrix(shape.rows, shape.cols, std::move(words), std::move(row_scales), std::move(column_scales));
    });
}

template <class Matrix>
Matrix load(const std::filesystem::path& path) requires is_row_column_matrix<Matrix> {
    return detail::load_single_record(
        path, [](std::istream& in, const std::string& source) { return load<Matrix>(in, source); });
}

}  // namespace multibool
