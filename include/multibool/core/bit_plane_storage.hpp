#pragma once
// The BitPlaneStorage concept: what a kernel needs to read K packed ±1 planes and their
// per-(kernel, row, group) scales, whatever the concrete container.
#include <concepts>
#include <cstddef>
#include <span>

namespace multibool {

template <class M>
concept BitPlaneStorage = requires(const M& m, std::size_t k, std::size_t i, std::size_t g) {
    typename M::word_type;
    typename M::scale_type;
    { M::kernels } -> std::convertible_to<std::size_t>;
    { M::word_bits } -> std::convertible_to<std::size_t>;
    { m.rows() } -> std::same_as<std::size_t>;
    { m.cols() } -> std::same_as<std::size_t>;
    { m.group_size() } -> std::same_as<std::size_t>;
    { m.groups_per_row() } -> std::same_as<std::size_t>;
    { m.words_per_row() } -> std::same_as<std::size_t>;
    // Group g covers columns [group_begin(g), group_end(g)); the last one may be shorter.
    { m.group_begin(g) } -> std::same_as<std::size_t>;
    { m.group_end(g) } -> std::same_as<std::size_t>;
    // Bit j of a row lives at bit (j % word_bits) of word (j / word_bits); bit 1 is +1.
    { m.plane_row(k, i) } -> std::same_as<std::span<const typename M::word_type>>;
    // One scale per group of the row: scales(k, i)[g] = alpha_k[i, g].
    { m.scales(k, i) } -> std::same_as<std::span<const typename M::scale_type>>;
};

}  // namespace multibool
