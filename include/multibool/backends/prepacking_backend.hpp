#pragma once
// The PrepackingBackend concept: a ProductBackend that reorders a matrix once into a layout of
// its own (like oneDNN's reorder or XNNPACK's packed weights) and runs the forward products on
// that copy. The BitPlaneStorage stays the storage of record; the packed copy is rebuilt from it
// whenever it changes.
#include <concepts>
#include <span>

#include "multibool/backends/product_backend.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

template <class B, class M>
concept PrepackingBackend = ProductBackend<B, M> && requires(const B& backend, const M& m) {
    typename B::template packed_type<M>;
    { backend.pack(m) } -> std::same_as<typename B::template packed_type<M>>;
} && requires(const B& backend, const typename B::template packed_type<M>& packed, std::span<const float> x,
              std::span<float> y, MatrixView<const float> xs, MatrixView<float> ys) {
    backend.gemv(packed, x, y);
    backend.gemm(packed, xs, ys);
};

}  // namespace multibool
