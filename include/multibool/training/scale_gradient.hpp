#pragma once
// ScaleGradient: dL/dalpha_k[i, g] = sum_{j in g} Gr_ij * b_kij, accumulated from tiles of the
// weight gradient Gr as they are formed (docs/METHOD.md §5). Same [kernel][row][group] layout as the scales
// of a BitPlaneMatrix, in float whatever the matrix's scale storage type.
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

namespace detail {

// How many values a [kernel][row][group] array of per-scale values holds, or std::length_error
// naming `who` when that does not fit in size_t.
inline std::size_t per_scale_count(const char* who, std::size_t kernels, std::size_t rows, std::size_t groups_per_row) {
    return checked_product(who, checked_product(who, kernels, rows), groups_per_row);
}

// Where element e of a [kernel][row][group] array of per-scale values sits.
struct ScaleIndex {
    std::size_t kernel;
    std::size_t row;
    std::size_t group;
};
constexpr ScaleIndex scale_index(std::size_t e, std::size_t rows, std::size_t groups_per_row) noexcept {
    return {e / (rows * groups_per_row), e / groups_per_row % rows, e % groups_per_row};
}

}  // namespace detail

template <std::size_t K>
class ScaleGradient {
public:
    static constexpr std::size_t kernels = K;

    ScaleGradient() = default;
    // All zero, for a matrix of `rows` rows and `groups_per_row` scale groups per row.
    ScaleGradient(std::size_t rows, std::size_t groups_per_row)
        : rows_(rows),
          groups_(groups_per_row),
          values_(detail::per_scale_count("ScaleGradient", K, rows, groups_per_row), 0.0f) {}
    template <BitPlaneStorage M>
        requires(M::kernels == K)
    explicit ScaleGradient(const M& m) : ScaleGradient(m.rows(), m.groups_per_row()) {}

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_; }
    [[nodiscard]] float operator()(std::size_t k, std::size_t i, std::size_t g) const noexcept {
        return values_[(k * rows_ + i) * groups_ + g];
    }
    // The row's gradients, one per group, as m.scales(k, i) holds the scales.
    [[nodiscard]] std::span<const float> row(std::size_t k, std::size_t i) const noexcept {
        return std::span<const float>(values_).subspan((k * rows_ + i) * groups_, groups_);
    }
    [[nodiscard]] std::span<const float> data() const noexcept { return values_; }
    // Back to zero, e.g. between optimizer steps.
    void clear() noexcept { std::fill(values_.begin(), values_.end(), 0.0f); }

    // Adds the contributions of rows [first_row, first_row + tile.rows()) of Gr, tile holding them
    // for every column of m. Calls for disjoint row ranges may run concurrently.
    template <BitPlaneStorage M>
        requires(M::kernels == K)
    void accumulate(const M& m, std::size_t first_row, MatrixView<const float> tile) {
        if (m.rows() != rows_ || m.groups_per_row() != groups_) {
            throw std::invalid_argument("ScaleGradient::accumulate: the gradient holds " + std::to_string(rows_) +
                                        " rows x " + std::to_string(groups_) + " groups but the matrix is " +
                                        std::to_string(m.rows()) + "x" + std::to_string(m.cols()) + " with " +
                                        std::to_string(m.groups_per_row()) + " groups per row");
        }
        if (tile.cols() != m.cols() || first_row > rows_ || tile.rows() > rows_ - first_row) {
            throw std::invalid_argument("ScaleGradient::accumulate: a " + std::to_string(tile.rows()) + "x" +
                                        std::to_string(tile.cols()) + " tile at row " + std::to_string(first_row) +
                                        " does not fit the " + std::to_string(m.rows()) + "x" +
                                        std::to_string(m.cols()) + " matrix");
        }
        using Word = typename M::word_type;
        for (std::size_t r = 0; r < tile.rows(); ++r) {
            const std::size_t i = first_row + r;
            const float* gr = tile.row(r).data();
            for (std::size_t k = 0; k < K; ++k) {
                const std::span<const Word> plane = m.plane_row(k, i);
                float* out = values_.data() + (k * rows_ + i) * groups_;
                for (std::size_t g = 0; g < groups_; ++g)
                    out[g] += signed_sum(plane, gr, m.group_begin(g), m.group_end(g));
            }
        }
    }

private:
    // sum_{j in [begin, end)} b_j gr_j. Lanes of `lanes` independent partial sums, each term's sign
    // set by XOR-ing the bit into the float's sign bit, let the compiler vectorize the loop; the
    // order of the additions is fixed, so results do not depend on tiles or threads.
    template <class Word>
    static float signed_sum(std::span<const Word> plane, const float* gr, std::size_t begin, std::size_t end) noexcept {
        constexpr std::size_t lanes = 16;
        std::array<float, lanes> partial{};
        std::size_t j = begin;
        for (; j + lanes <= end; j += lanes) {
            const auto bits = static_cast<std::uint32_t>(bits_at(plane, j));
            for (std::size_t l = 0; l < lanes; ++l) {
                const std::uint32_t negate = ((~bits >> l) & 1u) << 31;
                partial[l] += std::bit_cast<float>(std::bit_cast<std::uint32_t>(gr[j + l]) ^ negate);
            }
        }
        float s = 0.0f;
        for (const float p : partial) s += p;
        for (; j < end; ++j) s += column_is_set(plane, j) ? gr[j] : -gr[j];
        return s;
    }

    std::size_t rows_ = 0;
    std::size_t groups_ = 0;
    std::vector<float> values_;
};

template <BitPlaneStorage M>
ScaleGradient(const M&) -> ScaleGradient<M::kernels>;

}  // namespace multibool
