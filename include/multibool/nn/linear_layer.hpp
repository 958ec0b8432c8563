#pragma once
// The LinearLayer concept: y = W x for one vector or a batch of row-major token vectors, and
// the input gradient dx = W^T dy. A model written against it runs with float or Boolean layers.
#include <concepts>
#include <cstddef>
#include <span>

#include "multibool/core/matrix_view.hpp"

namespace multibool {

template <class L>
concept LinearLayer = requires(const L& layer, std::span<const float> x, std::span<float> y, MatrixView<const float> xs,
                               MatrixView<float> ys, std::span<const float> dy, std::span<float> dx,
                               MatrixView<const float> dys, MatrixView<float> dxs) {
    { layer.in_features() } -> std::same_as<std::size_t>;
    { layer.out_features() } -> std::same_as<std::size_t>;
    layer.forward(x, y);
    layer.forward(xs, ys);
    layer.backward_input(dy, dx);
    layer.backward_input(dys, dxs);
};

}  // namespace multibool
