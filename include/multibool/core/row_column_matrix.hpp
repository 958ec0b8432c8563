#pragma once
// RowColumnMatrix: K Boolean matrices with one row and one column scale vector per kernel,
// W_hat = sum_k (s_out,k s_in,k^T) (.) B_k: the MBOK / SVID scale layout of docs/METHOD.md §1, costing
// (m + n) scales per kernel instead of one per (row, group).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/group_size.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

// One kernel of a RowColumnMatrix seen as a BitPlaneStorage with a single kernel and one group
// per row: the sign plane B_k carrying the row scales s_out,k. Every backend product applies to
// it unchanged, so B_k (s_in,k (.) x) needs no kernel of its own. A view: valid while the
// matrix it came from is alive and unchanged in shape.
template <class Scale, class Word>
class RowScaledPlane {
public:
    using word_type = Word;
    using scale_type = Scale;
    static constexpr std::size_t kernels = 1;
    static constexpr std::size_t word_bits = bits_of<Word>;

    RowScaledPlane(std::span<const Word> words, std::span<const Scale> row_scales, std::size_t cols) noexcept
        : words_(words), row_scales_(row_scales), cols_(cols) {}

    [[nodiscard]] std::size_t rows() const noexcept { return row_scales_.size(); }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t group_size() const noexcept { return cols_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return cols_ == 0 ? 0 : 1; }
    [[nodiscard]] std::size_t words_per_row() const noexcept { return words_for_columns<Word>(cols_); }
    [[nodiscard]] std::size_t group_begin(std::size_t) const noexcept { return 0; }
    [[nodiscard]] std::size_t group_end(std::size_t) const noexcept { return cols_; }
    // The kernel index is always 0: this storage has one kernel.
    [[nodiscard]] std::span<const Word> plane_row(std::size_t, std::size_t i) const noexcept {
        return words_.subspan(i * words_per_row(), words_per_row());
    }
    [[nodiscard]] std::span<const Scale> scales(std::size_t, std::size_t i) const noexcept {
        return row_scales_.subspan(i, 1);
    }

private:
    std::span<const Word> words_;
    std::span<const Scale> row_scales_;
    std::size_t cols_ = 0;
};

template <std::size_t K, class Scale = float, class Word = std::uint64_t>
class RowColumnMatrix {
    // The planes and the row scales are exactly a per-row BitPlaneMatrix (alpha_k[i, 0] = s_out,k[i]):
    // it owns the packed layout, its padding invariant and its sign setters.
    using PlaneMatrix = BitPlaneMatrix<K, per_row, Scale, Word>;

public:
    using word_type = Word;
    using scale_type = Scale;
    using kernel_view_type = RowScaledPlane<Scale, Word>;
    static constexpr std::size_t kernels = K;
    static constexpr std::size_t word_bits = bits_of<Word>;

    RowColumnMatrix() = default;

    // All bits -1 and all scales 0: the zero matrix.
    RowColumnMatrix(std::size_t rows, std::size_t cols)
        : planes_(checked_shape(rows, cols), cols), column_scales_(column_scale_count(cols), Scale{0}) {}

    // Adopts packed words (kernel, row, word), row scales (kernel, row) and column scales
    // (kernel, col), e.g. read from a file; validates sizes, padding and values.
    RowColumnMatrix(std::size_t rows, std::size_t cols, std::vector<Word> words, std::vector<Scale> row_scales,
                    std::vector<Scale> column_scales)
        : planes_(checked_shape(rows, cols), cols, std::move(words),
                  validated(rows, cols, "row", rows, std::move(row_scales))),
          column_scales_(validated(rows, cols, "column", cols, std::move(column_scales))) {
        check_weight_bound();
    }

    // From explicit signs (K x rows x cols, each +1 or -1) and scales as in the adopting constructor.
    static RowColumnMatrix from_planes(std::size_t rows, std::size_t cols, std::span<const std::int8_t> signs,
                                       std::span<const Scale> row_scales, std::span<const Scale> column_scales) {
        checked_shape(rows, cols);
        check_scales(rows, cols, "row", rows, row_scales);
        check_scales(rows, cols, "column", cols, column_scales);
        RowColumnMatrix m;
        m.planes_ = PlaneMatrix::from_planes(rows, cols, signs, row_scales);
        m.column_scales_.assign(column_scales.begin(), column_scales.end());
        m.check_weight_bound();
        return m;
    }

    [[nodiscard]] std::size_t rows() const noexcept { return planes_.rows(); }
    [[nodiscard]] std::size_t cols() const noexcept { return planes_.cols(); }
    [[nodiscard]] std::size_t words_per_row() const noexcept { return planes_.words_per_row(); }
    [[nodiscard]] std::span<const Word> plane_row(std::size_t k, std::size_t i) const noexcept {
        return planes_.plane_row(k, i);
    }

    // s_out,k: rows() values.
    [[nodiscard]] std::span<const Scale> row_scales(std::size_t k) const noexcept {
        return planes_.scale_data().subspan(k * rows(), rows());
    }
    // s_in,k: cols() values.
    [[nodiscard]] std::span<const Scale> column_scales(std::size_t k) const noexcept {
        return std::span<const Scale>(column_scales_).subspan(k * cols(), cols());
    }
    [[nodiscard]] Scale row_scale(std::size_t k, std::size_t i) const noexcept { return planes_.scale(k, i, 0); }
    [[nodiscard]] Scale column_scale(std::size_t k, std::size_t j) const noexcept {
        return column_scales_[k * cols() + j];
    }
    void set_row_scale(std::size_t k, std::size_t i, Scale value) {
        check_finite(rows(), cols(), "row", k, i, value);
        planes_.set_scale(k, i, 0, value);
    }
    void set_column_scale(std::size_t k, std::size_t j, Scale value) {
        check_finite(rows(), cols(), "column", k, j, value);
        column_scales_[k * cols() + j] = value;
    }

    // +1 or -1.
    [[nodiscard]] int sign(std::size_t k, std::size_t i, std::size_t j) const noexcept { return planes_.sign(k, i, j); }
    void set_sign(std::size_t k, std::size_t i, std::size_t j, int s) noexcept { planes_.set_sign(k, i, j, s); }
    void flip(std::size_t k, std::size_t i, std::size_t j) noexcept { planes_.flip(k, i, j); }

    // Kernel k as a one-kernel storage for the backends: B_k with the row scales s_out,k.
    [[nodiscard]] kernel_view_type kernel(std::size_t k) const noexcept {
        const std::size_t per_kernel = rows() * words_per_row();
        return kernel_view_type(planes_.words().subspan(k * per_kernel, per_kernel), row_scales(k), cols());
    }

    // W_hat[i, j] = sum_k s_out,k[i] * s_in,k[j] * b_kij, in double.
    [[nodiscard]] double weight(std::size_t i, std::size_t j) const noexcept {
        double w = 0.0;
        for (std::size_t k = 0; k < K; ++k) {
            w += static_cast<double>(row_scale(k, i)) * static_cast<double>(column_scale(k, j)) * sign(k, i, j);
        }
        return w;
    }

    // Dense row-major rows x cols copy of W_hat.
    [[nodiscard]] std::vector<float> dequantize() const {
        std::vector<float> dense(rows() * cols());
        for (std::size_t i = 0; i < rows(); ++i) {
            for (std::size_t j = 0; j < cols(); ++j) dense[i * cols() + j] = static_cast<float>(weight(i, j));
        }
        return dense;
    }

    // Bytes actually held: the packed planes (row padding included) and K * (rows + cols) scales.
    [[nodiscard]] std::size_t storage_bytes() const noexcept {
        return planes_.storage_bytes() + column_scales_.size() * sizeof(Scale);
    }
    // Honest bits per weight: everything storage_bytes() counts, over rows * cols.
    [[nodiscard]] double bits_per_weight() const noexcept {
        return rows() * cols() == 0 ? 0.0 : 8.0 * double(storage_bytes()) / double(rows() * cols());
    }

    // The whole payload, in the order of the file format: plane words (kernel, row, word), row
    // scales (kernel, row), column scales (kernel, col).
    [[nodiscard]] std::span<const Word> words() const noexcept { return planes_.words(); }
    [[nodiscard]] std::span<const Scale> row_scale_data() const noexcept { return planes_.scale_data(); }
    [[nodiscard]] std::span<const Scale> column_scale_data() const noexcept { return column_scales_; }

    // Element counts of the three payload parts; refuse shapes whose storage does not fit in size_t.
    static std::size_t word_count(std::size_t rows, std::size_t cols) { return PlaneMatrix::word_count(rows, cols); }
    static std::size_t row_scale_count(std::size_t rows) { return scale_count("RowColumnMatrix row scales", rows); }
    static std::size_t column_scale_count(std::size_t cols) {
        return scale_count("RowColumnMatrix column scales", cols);
    }

    friend bool operator==(const RowColumnMatrix&, const RowColumnMatrix&) = default;

private:
    static std::size_t scale_count(const char* what, std::size_t length) {
        const std::size_t count = checked_product(what, K, length);
        checked_product(what, count, sizeof(Scale));
        return count;
    }

    static std::string shape(std::size_t rows, std::size_t cols) {
        return "RowColumnMatrix " + std::to_string(rows) + "x" + std::to_string(cols);
    }

    // Row scales live with the planes, which hold nothing for a row without columns.
    static std::size_t checked_shape(std::size_t rows, std::size_t cols) {
        if (rows != 0 && cols == 0) {
            throw std::invalid_argument(shape(rows, cols) + ": a matrix with rows needs at least one column");
        }
        return rows;
    }

    // A weight is sum_k +-r_ik c_jk: with each kernel's largest row and column scales, the sum of
    // their products bounds every weight; beyond float's range, weights could dequantize to infinity.
    void check_weight_bound() const {
        double bound = 0.0;
        for (std::size_t k = 0; k < K; ++k) {
            double row = 0.0, column = 0.0;
            for (std::size_t i = 0; i < rows(); ++i)
                row = std::max(row, std::abs(static_cast<double>(row_scale(k, i))));
            for (std::size_t j = 0; j < cols(); ++j)
                column = std::max(column, std::abs(static_cast<double>(column_scale(k, j))));
            bound += row * column;
        }
        if (bound > static_cast<double>(std::numeric_limits<float>::max())) {
            throw std::invalid_argument(shape(rows(), cols()) + ": row and column scales whose products reach " +
                                        std::to_string(bound) + ", beyond float: its weights could be infinite");
        }
    }

    // side names the scales ("row" or "column"); there are K * length of them.
    static void check_scales(std::size_t rows, std::size_t cols, const char* side, std::size_t length,
                             std::span<const Scale> scales) {
        const std::size_t expected = scale_count("RowColumnMatrix scales", length);
        if (scales.size() != expected) {
            throw std::invalid_argument(shape(rows, cols) + ": expected " + std::to_string(expected) + " " + side +
                                        " scales, got " + std::to_string(scales.size()));
        }
        for (std::size_t s = 0; s < scales.size(); ++s)
            check_finite(rows, cols, side, s / length, s % length, scales[s]);
    }
    static std::vector<Scale> validated(std::size_t rows, std::size_t cols, const char* side, std::size_t length,
                                        std::vector<Scale> scales) {
        check_scales(rows, cols, side, length, scales);
        return scales;
    }

    static void check_finite(std::size_t rows, std::size_t cols, const char* side, std::size_t k, std::size_t index,
                             Scale value) {
        if (!std::isfinite(static_cast<double>(value))) {
            throw std::invalid_argument(shape(rows, cols) + ": " + side + " scale of kernel " + std::to_string(k) +
                                        " " + side + " " + std::to_string(index) + " is " +
                                        std::to_string(static_cast<double>(value)) + ", not a finite number");
        }
    }

    PlaneMatrix planes_;
    std::vector<Scale> column_scales_;
};

template <class M>
inline constexpr bool is_row_column_matrix = false;
template <std::size_t K, class Scale, class Word>
inline constexpr bool is_row_column_matrix<RowColumnMatrix<K, Scale, Word>> = true;

}  // namespace multibool
