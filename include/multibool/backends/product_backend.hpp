#pragma once
// The ProductBackend concept: every product a backend computes straight from the packed
// planes of a BitPlaneStorage (docs/METHOD.md §2). Backends are interchangeable; the scalar one is the
// reference the others are tested against.
#include <concepts>
#include <span>
#include <string_view>

#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

template <class B, class M>
concept ProductBackend = BitPlaneStorage<M> &&
    requires(const B& backend, const M& m, std::span<const float> x, std::span<float> y, MatrixView<const float> xs,
             MatrixView<float> ys, const Int8Activations<typename M::word_type>& xq,
             const BooleanActivations<typename M::word_type>& xb, std::span<const float> dy, std::span<float> dx,
             MatrixView<const float> dys, MatrixView<float> dxs) {
    { B::name } -> std::convertible_to<std::string_view>;
    backend.gemv(m, x, y);               // y = W_hat x
    backend.gemm(m, xs, ys);             // Y = X W_hat^T, one row of X per token
    backend.gemv_transposed(m, dy, dx);  // dx = W_hat^T dy
    backend.gemm_transposed(m, dys, dxs);
    backend.gemv_int8(m, xq, y);     // y = W_hat (scale * u), bit-serial
    backend.gemv_boolean(m, xb, y);  // y = W_hat x for x in {-1, +1}^n, XNOR + popcount
};

}  // namespace multibool
