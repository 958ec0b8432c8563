#pragma once
// The backward pass of a multi-Boolean linear layer y = W_hat x (docs/METHOD.md §2, §5): dX = dY W_hat from
// the packed planes, and the weight gradient Gr = dY^T X tile by tile, each tile feeding the scale
// gradient and a caller's hook (where a FlipOptimizer decides flips) at once. Nothing returns or
// keeps a dense m x n gradient.
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "multibool/backends/product_backend.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/training/scale_gradient.hpp"
#include "multibool/training/weight_gradient.hpp"

namespace multibool {

struct BackwardReport {
    // Bytes allocated beyond the caller's buffers: gradient_workspace_bytes(n, m, tiling). The
    // backend's own scratch for dX, if any, is not counted.
    std::size_t peak_extra_bytes = 0;
};

namespace detail {

// Everything is checked before dX is written, so a refused call changes nothing.
template <BitPlaneStorage M, std::size_t K>
void check_backward_shapes(const M& m, MatrixView<const float> x, MatrixView<const float> dy, MatrixView<float> dx,
                           const ScaleGradient<K>& scale_gradient, GradientTiling tiling) {
    if (tiling.tile_rows == 0) throw std::invalid_argument("multibool backward: tile_rows must be at least 1");
    const std::string matrix = std::to_string(m.rows()) + "x" + std::to_string(m.cols());
    if (x.cols() != m.cols() || dy.cols() != m.rows() || x.rows() != dy.rows()) {
        throw std::invalid_argument("multibool backward: for a " + matrix + " weight, X (" + shape_of(x) +
                                    ") must be T x " + std::to_string(m.cols()) + " and dY (" + shape_of(dy) +
                                    ") T x " + std::to_string(m.rows()) + " with the same T");
    }
    if (dx.rows() != x.rows() || dx.cols() != x.cols()) {
        throw std::invalid_argument("multibool backward: dX is " + shape_of(dx) + ", expected " + shape_of(x) +
                                    " like X");
    }
    if (scale_gradient.rows() != m.rows() || scale_gradient.groups_per_row() != m.groups_per_row()) {
        throw std::invalid_argument("multibool backward: the scale gradient holds " +
                                    std::to_string(scale_gradient.rows()) + " rows x " +
                                    std::to_string(scale_gradient.groups_per_row()) + " groups, the " + matrix +
                                    " weight has " + std::to_string(m.groups_per_row()) + " groups per row");
    }
}

}  // namespace detail

// For X (T x n, the layer's input) and dY (T x m, the gradient of its output): writes dX = dY W_hat,
// adds dL/dalpha to scale_gradient, and calls on_tile(first_row, tile) for every row tile of
// Gr = dY^T X (concurrently for disjoint rows when tiling.threads > 1). dX and a tile's scale
// gradient are computed before on_tile sees the tile, so on_tile may flip bits of the tile's rows
// in m itself.
template <class Backend, BitPlaneStorage M, class OnTile, class Allocator = std::allocator<float>>
    requires ProductBackend<Backend, M> BackwardReport backward(const Backend& backend, const M& m,
                                                                MatrixView<const float> x, MatrixView<const float> dy,
                                                                MatrixView<float> dx,
                                                                ScaleGradient<M::kernels>& scale_gradient,
                                                                GradientTiling tiling, OnTile&& on_tile,
                                                                const Allocator& allocator = {}) {
        detail::check_backward_shapes(m, x, dy, dx, scale_gradient, tiling);
        backend.gemm_transposed(m, dy, dx);
        for_each_gradient_tile(
            x, dy, tiling,
            [&](std::size_t first_row, MatrixView<const float> tile) {
                scale_gradient.accumulate(m, first_row, tile);
                on_tile(first_row, tile);
            },
            allocator);
        return {gradient_workspace_bytes(m.cols(), m.rows(), tiling)};
    }

// The same for a layer that owns its weights and its backend (MultiBoolLinear), through both. The
// weights are read-only here: on_tile must not flip them; flip a copy (or use BooleanTrainer) and
// hand the result to the layer's set_weights, which also refreshes the backend's packed copy.
template <class Layer, class OnTile, class Allocator = std::allocator<float>>
    requires requires(const Layer& layer) {
        layer.backend();
        requires BitPlaneStorage<std::remove_cvref_t<decltype(layer.weights())>>;
    }
BackwardReport backward(const Layer& layer, MatrixView<const float> x, MatrixView<const float> dy, MatrixView<float> dx,
                        ScaleGradient<std::remove_cvref_t<decltype(layer.weights())>::kernels>& scale_gradient,
                        GradientTiling tiling, OnTile&& on_tile, const Allocator& allocator = {}) {
    return backward(layer.backend(), layer.weights(), x, dy, dx, scale_gradient, tiling, std::forward<OnTile>(on_tile),
                    allocator);
}

}  // namespace multibool
