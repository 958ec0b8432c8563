#pragma once
// BitPlaneMatrix: K Boolean matrices packed as bit-planes plus one scale per
// (kernel, row, group of G input columns), i.e. W_hat = sum_k A_k (.) B_k  (docs/METHOD.md §1).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/group_size.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

// The most Boolean kernels a matrix holds: a weight's K bits then fit one byte (the flip
// statistics' kernel masks), and its 2^K levels stay few enough for nearest-level search. Parts
// instantiated once per K (dynamic dispatch, run-time K layers) cover fewer; each says how many.
inline constexpr std::size_t max_kernel_count = 8;

template <std::size_t K, std::size_t G, class Scale = float, class Word = std::uint64_t>
class BitPlaneMatrix {
    static_assert(K >= 1, "BitPlaneMatrix: K (the number of Boolean kernels) must be at least 1");
    static_assert(K <= max_kernel_count, "BitPlaneMatrix: K (the number of Boolean kernels) must be at most 8");
    static_assert(std::is_same_v<Word, std::uint8_t> || std::is_same_v<Word, std::uint16_t> ||
                      std::is_same_v<Word, std::uint32_t> || std::is_same_v<Word, std::uint64_t>,
                  "BitPlaneMatrix: Word must be an unsigned integer type (uint8_t, uint16_t, uint32_t or uint64_t)");
    static_assert(ScaleType<Scale>,
                  "BitPlaneMatrix: Scale must be float, double, multibool::half or multibool::bfloat16");

public:
    using word_type = Word;
    using scale_type = Scale;
    static constexpr std::size_t kernels = K;
    // The compile-time group size; per_row (0) means one group per row, see group_size().
    static constexpr std::size_t group_size_parameter = G;
    static constexpr std::size_t word_bits = bits_of<Word>;

    BitPlaneMatrix() = default;

    // All bits -1 and all scales 0: the zero matrix.
    BitPlaneMatrix(std::size_t rows, std::size_t cols)
        : rows_(checked_rows(rows, cols)),
          cols_(cols),
          words_(word_count(rows, cols), Word{0}),
          scales_(scale_count(rows, cols), Scale{0}) {}

    // Adopts packed words and scales, e.g. read from a file; validates sizes, padding and values.
    BitPlaneMatrix(std::size_t rows, std::size_t cols, std::vector<Word> words, std::vector<Scale> scales)
        : rows_(checked_rows(rows, cols)), cols_(cols), words_(std::move(words)), scales_(std::move(scales)) {
        const auto shape = std::to_string(rows) + "x" + std::to_string(cols);
        if (words_.size() != word_count(rows, cols)) {
            throw std::invalid_argument("BitPlaneMatrix " + shape + ": expected " +
                                        std::to_string(word_count(rows, cols)) + " plane words, got " +
                                        std::to_string(words_.size()));
        }
        if (scales_.size() != scale_count(rows, cols)) {
            throw std::invalid_argument("BitPlaneMatrix " + shape + ": expected " +
                                        std::to_string(scale_count(rows, cols)) + " scales, got " +
                                        std::to_string(scales_.size()));
        }
        const Word pad = padding_mask();
        for (std::size_t r = 0; r < K * rows; ++r) {
            if (words_per_row() != 0 && (words_[r * words_per_row() + words_per_row() - 1] & pad) != 0) {
                throw std::invalid_argument("BitPlaneMatrix " + shape + ": padding bits set in kernel " +
                                            std::to_string(r / rows) + " row " + std::to_string(r % rows));
            }
        }
        for (std::size_t s = 0; s < scales_.size(); ++s) check_finite(scales_[s], s);
        for (std::size_t i = 0; i < rows_; ++i) {
            for (std::size_t g = 0; g < groups_per_row(); ++g) check_group_sum(i, g, K, Scale{});
        }
    }

    // A moved-from matrix is the empty 0x0 matrix, never a shape without storage.
    BitPlaneMatrix(const BitPlaneMatrix&) = default;
    BitPlaneMatrix& operator=(const BitPlaneMatrix&) = default;
    BitPlaneMatrix(BitPlaneMatrix&& other) noexcept
        : rows_(std::exchange(other.rows_, 0)),
          cols_(std::exchange(other.cols_, 0)),
          words_(std::exchange(other.words_, {})),
          scales_(std::exchange(other.scales_, {})) {}
    BitPlaneMatrix& operator=(BitPlaneMatrix&& other) noexcept {
        rows_ = std::exchange(other.rows_, 0);
        cols_ = std::exchange(other.cols_, 0);
        words_ = std::exchange(other.words_, {});
        scales_ = std::exchange(other.scales_, {});
        return *this;
    }

    // From explicit signs (K x rows x cols, each +1 or -1) and scales (K x rows x groups_per_row).
    static BitPlaneMatrix from_planes(std::size_t rows, std::size_t cols, std::span<const std::int8_t> signs,
                                      std::span<const Scale> scales) {
        const std::size_t sign_count = checked_product("BitPlaneMatrix::from_planes", K,
                                                       checked_product("BitPlaneMatrix::from_planes", rows, cols));
        if (signs.size() != sign_count) {
            throw std::invalid_argument("BitPlaneMatrix::from_planes: expected " + std::to_string(sign_count) +
                                        " signs for K=" + std::to_string(K) + " " + std::to_string(rows) + "x" +
                                        std::to_string(cols) + ", got " + std::to_string(signs.size()));
        }
        if (scales.size() != scale_count(rows, cols)) {
            throw std::invalid_argument("BitPlaneMatrix::from_planes: expected " +
                                        std::to_string(scale_count(rows, cols)) + " scales, got " +
                                        std::to_string(scales.size()));
        }
        BitPlaneMatrix m(rows, cols);
        for (std::size_t k = 0; k < K; ++k) {
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t j = 0; j < cols; ++j) {
                    const int s = signs[(k * rows + i) * cols + j];
                    if (s != 1 && s != -1) {
                        throw std::invalid_argument("BitPlaneMatrix::from_planes: sign at kernel " + std::to_string(k) +
                                                    " row " + std::to_string(i) + " col " + std::to_string(j) + " is " +
                                                    std::to_string(s) + ", expected +1 or -1");
                    }
                    m.set_sign(k, i, j, s);
                }
            }
        }
        for (std::size_t s = 0; s < scales.size(); ++s) m.check_finite(scales[s], s);
        std::copy(scales.begin(), scales.end(), m.scales_.begin());
        return m;
    }

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t group_size() const noexcept { return G == per_row ? cols_ : G; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_for(cols_); }
    [[nodiscard]] std::size_t words_per_row() const noexcept { return words_for_columns<Word>(cols_); }
    [[nodiscard]] std::size_t group_begin(std::size_t g) const noexcept { return g * group_size(); }
    [[nodiscard]] std::size_t group_end(std::size_t g) const noexcept {
        return std::min(cols_, (g + 1) * group_size());
    }

    [[nodiscard]] std::span<const Word> plane_row(std::size_t k, std::size_t i) const noexcept {
        return std::span<const Word>(words_).subspan((k * rows_ + i) * words_per_row(), words_per_row());
    }
    [[nodiscard]] std::span<const Scale> scales(std::size_t k, std::size_t i) const noexcept {
        return std::span<const Scale>(scales_).subspan((k * rows_ + i) * groups_per_row(), groups_per_row());
    }
    [[nodiscard]] Scale scale(std::size_t k, std::size_t i, std::size_t g) const noexcept {
        return scales_[(k * rows_ + i) * groups_per_row() + g];
    }
    void set_scale(std::size_t k, std::size_t i, std::size_t g, Scale value) {
        const std::size_t index = (k * rows_ + i) * groups_per_row() + g;
        check_finite(value, index);
        check_group_sum(i, g, k, value);
        scales_[index] = value;
    }

    // +1 or -1.
    [[nodiscard]] int sign(std::size_t k, std::size_t i, std::size_t j) const noexcept {
        return column_is_set(plane_row(k, i), j) ? 1 : -1;
    }
    void set_sign(std::size_t k, std::size_t i, std::size_t j, int s) noexcept {
        set_column(mutable_plane_row(k, i), j, s > 0);
    }
    void flip(std::size_t k, std::size_t i, std::size_t j) noexcept { flip_column(mutable_plane_row(k, i), j); }

    // W_hat[i, j] = sum_k alpha_k[i, g(j)] * b_kij, summed in float for 16-bit scales.
    [[nodiscard]] scale_arithmetic_t<Scale> weight(std::size_t i, std::size_t j) const noexcept {
        using Arithmetic = scale_arithmetic_t<Scale>;
        const std::size_t g = j / group_size();
        Arithmetic w = 0;
        for (std::size_t k = 0; k < K; ++k) w += static_cast<Arithmetic>(scale(k, i, g)) * Arithmetic(sign(k, i, j));
        return w;
    }

    // Dense row-major rows x cols copy of W_hat.
    [[nodiscard]] std::vector<float> dequantize() const {
        std::vector<float> dense(rows_ * cols_);
        for (std::size_t i = 0; i < rows_; ++i) {
            for (std::size_t j = 0; j < cols_; ++j) dense[i * cols_ + j] = static_cast<float>(weight(i, j));
        }
        return dense;
    }

    // Bytes actually held: the packed planes (row padding included) and the scales.
    [[nodiscard]] std::size_t storage_bytes() const noexcept {
        return words_.size() * sizeof(Word) + scales_.size() * sizeof(Scale);
    }
    // Honest bits per weight: everything storage_bytes() counts, over rows * cols.
    [[nodiscard]] double bits_per_weight() const noexcept {
        return rows_ * cols_ == 0 ? 0.0 : 8.0 * double(storage_bytes()) / double(rows_ * cols_);
    }

    // The whole payload, in the order of the file format: plane k, row i, word w; then scales.
    [[nodiscard]] std::span<const Word> words() const noexcept { return words_; }
    [[nodiscard]] std::span<const Scale> scale_data() const noexcept { return scales_; }

    // Bits of the last word of a row that lie beyond cols: always zero.
    [[nodiscard]] Word padding_mask() const noexcept {
        const std::size_t used = cols_ % word_bits;
        return used == 0 ? Word{0} : Word(std::numeric_limits<Word>::max() << used);
    }

    // K * rows * words and K * rows * groups; refuses shapes whose storage, in elements or in
    // bytes, does not fit in size_t.
    static std::size_t word_count(std::size_t rows, std::size_t cols) {
        constexpr const char* what = "BitPlaneMatrix planes";
        const std::size_t words = checked_product(what, checked_product(what, K, rows), words_for_columns<Word>(cols));
        checked_product(what, words, sizeof(Word));
        return words;
    }
    static std::size_t scale_count(std::size_t rows, std::size_t cols) {
        constexpr const char* what = "BitPlaneMatrix scales";
        const std::size_t scales = checked_product(what, checked_product(what, K, rows), groups_for(cols));
        checked_product(what, scales, sizeof(Scale));
        return scales;
    }

    friend bool operator==(const BitPlaneMatrix&, const BitPlaneMatrix&) = default;

private:
    [[nodiscard]] static constexpr std::size_t groups_for(std::size_t cols) noexcept {
        if constexpr (G == per_row) {
            return cols == 0 ? 0 : 1;
        } else {
            return (cols + G - 1) / G;
        }
    }
    // Rows without columns would hold no bits and no scales: nothing in a file could bound them.
    static std::size_t checked_rows(std::size_t rows, std::size_t cols) {
        if (rows != 0 && cols == 0) {
            throw std::invalid_argument("BitPlaneMatrix " + std::to_string(rows) +
                                        "x0: a matrix with rows needs at least one column");
        }
        return rows;
    }
    // Private so that every write goes through set_sign/flip, which never touch padding bits.
    [[nodiscard]] std::span<Word> mutable_plane_row(std::size_t k, std::size_t i) noexcept {
        return std::span<Word>(words_).subspan((k * rows_ + i) * words_per_row(), words_per_row());
    }
    void check_finite(Scale value, std::size_t index) const {
        if (!is_finite(value)) {
            const std::size_t per_kernel = rows_ * groups_per_row();
            throw std::invalid_argument("BitPlaneMatrix " + std::to_string(rows_) + "x" + std::to_string(cols_) +
                                        ": scale of kernel " + std::to_string(index / per_kernel) + " row " +
                                        std::to_string(index % per_kernel / groups_per_row()) + " group " +
                                        std::to_string(index % groups_per_row()) + " is " +
                                        std::to_string(static_cast<double>(value)) + ", not a finite number");
        }
    }

    // A weight is a signed sum of its group's K scales: finite scales whose magnitudes sum beyond
    // float's range would dequantize to infinity. Checked with kernel `replaced`'s scale taken as
    // `value` (replaced == K: the stored scales as they are).
    void check_group_sum(std::size_t i, std::size_t g, std::size_t replaced, Scale value) const {
        double sum = 0.0;
        for (std::size_t k = 0; k < K; ++k) {
            const Scale alpha = k == replaced ? value : scales_[(k * rows_ + i) * groups_per_row() + g];
            sum += std::abs(static_cast<double>(alpha));
        }
        if (sum > static_cast<double>(std::numeric_limits<float>::max())) {
            throw std::invalid_argument("BitPlaneMatrix " + std::to_string(rows_) + "x" + std::to_string(cols_) +
                                        ": the scales of row " + std::to_string(i) + " group " + std::to_string(g) +
                                        " sum to " + std::to_string(sum) +
                                        " in magnitude, beyond float: its weights would be infinite");
        }
    }

    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::vector<Word> words_;
    std::vector<Scale> scales_;
};

// The same bits with every scale rounded to ToScale: scales train in float and deploy as fp16.
// Throws, naming the scale, when one does not fit ToScale.
template <class ToScale, std::size_t K, std::size_t G, class Scale, class Word>
BitPlaneMatrix<K, G, ToScale, Word> scale_cast(const BitPlaneMatrix<K, G, Scale, Word>& m) {
    std::vector<Word> words;
    std::vector<ToScale> scales;
    words.reserve(BitPlaneMatrix<K, G, ToScale, Word>::word_count(m.rows(), m.cols()));
    scales.reserve(BitPlaneMatrix<K, G, ToScale, Word>::scale_count(m.rows(), m.cols()));
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            const auto plane = m.plane_row(k, i);
            words.insert(words.end(), plane.begin(), plane.end());
        }
    }
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (const Scale alpha : m.scales(k, i)) {
                scales.push_back(static_cast<ToScale>(static_cast<scale_arithmetic_t<Scale>>(alpha)));
            }
        }
    }
    return {m.rows(), m.cols(), std::move(words), std::move(scales)};
}

}  // namespace multibool
