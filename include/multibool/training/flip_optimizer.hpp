#pragma once
// The FlipOptimizer concept (SPEC §5): consumes a tile of the weight gradient Gr = dY^T X
// (rows [first_row, first_row + tile.rows()) of the matrix, all columns) and flips bits whose
// first-order loss change -2 * alpha * b * Gr is negative. Only bits and scales persist.
#include <concepts>
#include <cstddef>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

struct FlipStatistics {
    std::size_t candidates = 0;  // bits with a negative first-order loss change
    std::size_t flips = 0;       // bits flipped
};

template <class O, class M>
concept FlipOptimizer = BitPlaneStorage<M> &&
    requires(O& optimizer, M& m, std::size_t first_row, MatrixView<const float> gradient_tile) {
    { optimizer.apply(m, first_row, gradient_tile) } -> std::convertible_to<FlipStatistics>;
};

}  // namespace multibool
