#pragma once
// RowColumnLinear: a linear layer whose weight is a RowColumnMatrix (row x column scales),
// computed kernel by kernel through a ProductBackend's products on the packed planes:
//   y = sum_k s_out,k (.) (B_k (s_in,k (.) x)),   dx = sum_k s_in,k (.) (B_k^T (s_out,k (.) dy)).
// Nothing is dequantized; the row scales ride along as the per-row scales of each kernel view.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "multibool/core/matrix_view.hpp"
#include "multibool/core/row_column_matrix.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/backends/default_backend.hpp"
#include "multibool/backends/product_backend.hpp"
#include "multibool/solvers/svid.hpp"

namespace multibool {

template <std::size_t K, class Word = std::uint64_t, class Backend = DefaultBackend>
class RowColumnLinear {
public:
    using matrix_type = RowColumnMatrix<K, float, Word>;
    using backend_type = Backend;
    static_assert(ProductBackend<Backend, typename matrix_type::kernel_view_type>,
                  "RowColumnLinear: Backend does not provide every product of the ProductBackend concept");

    RowColumnLinear() = default;
    explicit RowColumnLinear(matrix_type weights, Backend backend = {})
        : weights_(std::move(weights)), backend_(std::move(backend)) {}

    // Converts a dense out x in float matrix with the SVID residual initializer.
    static RowColumnLinear from_dense(MatrixView<const float> weights, Backend backend = {}) {
        return RowColumnLinear(svid_residual<matrix_type>(weights), std::move(backend));
    }

    [[nodiscard]] std::size_t in_features() const noexcept { return weights_.cols(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return weights_.rows(); }
    [[nodiscard]] const matrix_type& weights() const noexcept { return weights_; }
    [[nodiscard]] matrix_type& weights() noexcept { return weights_; }
    [[nodiscard]] const Backend& backend() const noexcept { return backend_; }

    // One vector is a batch of one token: a single code path per direction.
    void forward(std::span<const float> x, std::span<float> y) const {
        check_length("RowColumnLinear::forward", "x", in_features(), x.size());
        check_length("RowColumnLinear::forward", "y", out_features(), y.size());
        forward(MatrixView<const float>(x, 1, x.size()), MatrixView<float>(y, 1, y.size()));
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        check_length("RowColumnLinear::forward", "columns of X", in_features(), xs.cols());
        check_length("RowColumnLinear::forward", "columns of Y", out_features(), ys.cols());
        check_length("RowColumnLinear::forward", "rows of Y (tokens)", xs.rows(), ys.rows());
        std::vector<float> scaled(xs.data().size());
        std::vector<float> product(ys.data().size());
        const MatrixView<float> scaled_xs(std::span<float>(scaled), xs.rows(), xs.cols());
        const MatrixView<float> products(std::span<float>(product), ys.rows(), ys.cols());
        std::fill(ys.data().begin(), ys.data().end(), 0.0f);
        for (std::size_t k = 0; k < K; ++k) {
            scale_columns(xs, weights_.column_scales(k), scaled_xs);
            backend_.gemm(weights_.kernel(k), scaled_xs, products);  // s_out,k (.) B_k (s_in,k (.) x)
            add(products, ys);
        }
    }

    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        check_length("RowColumnLinear::backward_input", "dy", out_features(), dy.size());
        check_length("RowColumnLinear::backward_input", "dx", in_features(), dx.size());
        backward_input(MatrixView<const float>(dy, 1, dy.size()), MatrixView<float>(dx, 1, dx.size()));
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        check_length("RowColumnLinear::backward_input", "columns of dY", out_features(), dys.cols());
        check_length("RowColumnLinear::backward_input", "columns of dX", in_features(), dxs.cols());
        check_length("RowColumnLinear::backward_input", "rows of dX (tokens)", dys.rows(), dxs.rows());
        std::vector<float> product(dxs.data().size());
        const MatrixView<float> products(std::span<float>(product), dxs.rows(), dxs.cols());
        std::fill(dxs.data().begin(), dxs.data().end(), 0.0f);
        for (std::size_t k = 0; k < K; ++k) {
            backend_.gemm_transposed(weights_.kernel(k), dys, products);  // B_k^T (s_out,k (.) dy)
            scale_columns(products, weights_.column_scales(k), products);
            add(products, dxs);
        }
    }

private:
    // out[t, j] = in[t, j] * scales[j]; in and out may be the same view.
    static void scale_columns(MatrixView<const float> in, std::span<const float> scales, MatrixView<float> out) {
        for (std::size_t t = 0; t < in.rows(); ++t) {
            for (std::size_t j = 0; j < in.cols(); ++j) out(t, j) = in(t, j) * scales[j];
        }
    }
    static void add(MatrixView<const float> term, MatrixView<float> sum) {
        for (std::size_t e = 0; e < term.data().size(); ++e) sum.data()[e] += term.data()[e];
    }

    matrix_type weights_;
    [[no_unique_address]] Backend backend_;
};

}  // namespace multibool
