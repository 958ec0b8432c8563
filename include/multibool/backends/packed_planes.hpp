#pragma once
// PackedPlanes<K, Scale, Word>: a BitPlaneMatrix seen with its group size as a run-time value, so
// that code compiled once per (K, Scale, Word) (the dynamic-dispatch library) serves every G. A
// view: valid while the matrix it came from is alive and unchanged in shape.
#include <algorithm>
#include <cstddef>
#include <span>

#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/packed_bits.hpp"

namespace multibool {

template <std::size_t K, class Scale, class Word>
class PackedPlanes {
public:
    using word_type = Word;
    using scale_type = Scale;
    static constexpr std::size_t kernels = K;
    static constexpr std::size_t word_bits = bits_of<Word>;

    template <std::size_t G>
    explicit PackedPlanes(const BitPlaneMatrix<K, G, Scale, Word>& m) noexcept
        : rows_(m.rows()),
          cols_(m.cols()),
          group_size_(m.group_size()),
          groups_per_row_(m.groups_per_row()),
          words_per_row_(m.words_per_row()),
          words_(m.words()),
          scales_(m.scale_data()) {}

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::size_t group_size() const noexcept { return group_size_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_per_row_; }
    [[nodiscard]] std::size_t words_per_row() const noexcept { return words_per_row_; }
    [[nodiscard]] std::size_t group_begin(std::size_t g) const noexcept { return g * group_size_; }
    [[nodiscard]] std::size_t group_end(std::size_t g) const noexcept { return std::min(cols_, (g + 1) * group_size_); }
    // BitPlaneMatrix's layouts: planes [kernel][row][word], scales [kernel][row][group].
    [[nodiscard]] std::span<const Word> plane_row(std::size_t k, std::size_t i) const noexcept {
        return words_.subspan((k * rows_ + i) * words_per_row_, words_per_row_);
    }
    [[nodiscard]] std::span<const Scale> scales(std::size_t k, std::size_t i) const noexcept {
        return scales_.subspan((k * rows_ + i) * groups_per_row_, groups_per_row_);
    }

private:
    std::size_t rows_;
    std::size_t cols_;
    std::size_t group_size_;
    std::size_t groups_per_row_;
    std::size_t words_per_row_;
    std::span<const Word> words_;
    std::span<const Scale> scales_;
};

template <std::size_t K, std::size_t G, class Scale, class Word>
PackedPlanes(const BitPlaneMatrix<K, G, Scale, Word>&) -> PackedPlanes<K, Scale, Word>;

}  // namespace multibool
