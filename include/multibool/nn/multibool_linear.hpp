#pragma once
// MultiBoolLinear: a linear layer whose weight is a BitPlaneMatrix, computed by a
// ProductBackend straight from the packed planes, or, for a PrepackingBackend, from the
// backend's packed copy (rebuilt by set_weights).
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "multibool/backends/default_backend.hpp"
#include "multibool/backends/prepacking_backend.hpp"
#include "multibool/backends/product_backend.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/solvers/greedy_residual.hpp"

namespace multibool {

namespace detail {
struct NoPackedCopy {};
template <class B, class M>
struct packed_copy {
    using type = NoPackedCopy;
};
template <class B, class M>
    requires PrepackingBackend<B, M>
struct packed_copy<B, M> {
    using type = typename B::template packed_type<M>;
};
}  // namespace detail

// Scale is the storage type of the scales: float for training, half or bfloat16 for deployment.
template <std::size_t K, std::size_t G, class Scale = float, class Word = std::uint64_t, class Backend = DefaultBackend>
class MultiBoolLinear {
public:
    using matrix_type = BitPlaneMatrix<K, G, Scale, Word>;
    using backend_type = Backend;
    static_assert(ProductBackend<Backend, matrix_type>,
                  "MultiBoolLinear: Backend does not provide every product of the ProductBackend concept");

    MultiBoolLinear() = default;
    explicit MultiBoolLinear(matrix_type weights, Backend backend = {})
        : weights_(std::move(weights)), backend_(std::move(backend)), packed_(pack(weights_, backend_)) {}

    // Converts a dense out x in float matrix with the greedy residual initializer.
    static MultiBoolLinear from_dense(MatrixView<const float> weights, Backend backend = {}) {
        return MultiBoolLinear(greedy_residual<matrix_type>(weights), std::move(backend));
    }

    [[nodiscard]] std::size_t in_features() const noexcept { return weights_.cols(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return weights_.rows(); }
    [[nodiscard]] const matrix_type& weights() const noexcept { return weights_; }
    // Replaces the weights (e.g. after a training step) and refreshes the backend's packed copy.
    void set_weights(matrix_type weights) {
        packed_ = pack(weights, backend_);
        weights_ = std::move(weights);
    }
    [[nodiscard]] const Backend& backend() const noexcept { return backend_; }

    void forward(std::span<const float> x, std::span<float> y) const {
        if constexpr (prepacked) {
            backend_.gemv(packed_, x, y);
        } else {
            backend_.gemv(weights_, x, y);
        }
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        if constexpr (prepacked) {
            backend_.gemm(packed_, xs, ys);
        } else {
            backend_.gemm(weights_, xs, ys);
        }
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        backend_.gemv_transposed(weights_, dy, dx);
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        backend_.gemm_transposed(weights_, dys, dxs);
    }

private:
    static constexpr bool prepacked = PrepackingBackend<Backend, matrix_type>;
    using packed_type = typename detail::packed_copy<Backend, matrix_type>::type;

    static packed_type pack(const matrix_type& weights, const Backend& backend) {
        if constexpr (prepacked) {
            return backend.pack(weights);
        } else {
            return {};
        }
    }

    matrix_type weights_;
    [[no_unique_address]] Backend backend_;
    [[no_unique_address]] packed_type packed_;
};

}  // namespace multibool
