#pragma once
// RowColumnLinear: a linear layer whose weight is a RowColumnMatrix (row x column scales),
// computed kernel by kernel through a ProductBackend's products on the packed planes:
//   y = sum_k s_out,k (.) (B_k (s_in,k (.) x)),   dx = sum_k s_in,k (.) (B_k^T (s_out,k (.) dy)).
// Nothing is dequantized; the row scales ride along as the per-row scales of each kernel view.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "multibool/backends/default_backend.hpp"
#include "multibool/backends/product_backend.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/row_column_matrix.hpp"
#include "multibool/core/shape.hpp"
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
        const auto xs = one_token("RowColumnLinear::forward", "x", in_features(), x);
        forward(xs, one_token("RowColumnLinear::forward", "y", out_features(), y));
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        check_batch("RowColumnLinear::forward", xs, "X", in_features(), ys, "Y", out_features());
        std::vector<float> scaled(xs.data().size());
        const MatrixView<float> scaled_xs(std::span<float>(scaled), xs.rows(), xs.cols());
        sum_over_kernels(ys, [&](std::size_t k, MatrixView<float> products) {
            scale_columns(xs, weights_.column_scales(k), scaled_xs);
            backend_.gemm(weights_.kernel(k), scaled_xs, products);  // s_out,k (.) B_k (s_in,k (.) x)
        });
    }

    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        const auto dys = one_token("RowColumnLinear::backward_input", "dy", out_features(), dy);
        backward_input(dys, one_token("RowColumnLinear::backward_input", "dx", in_features(), dx));
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        check_batch("RowColumnLinear::backward_input", dys, "dY", out_features(), dxs, "dX", in_features());
        sum_over_kernels(dxs, [&](std::size_t k, MatrixView<float> products) {
            backend_.gemm_transposed(weights_.kernel(k), dys, products);  // B_k^T (s_out,k (.) dy)
            scale_columns(products, weights_.column_scales(k), products);
        });
    }

private:
    // A vector of `width` values as a batch of one token (checked in argument order, so the first
    // wrong vector is the one named).
    template <class T>
    static MatrixView<T> one_token(const char* who, const char* name, std::size_t width, std::span<T> v) {
        check_length(who, name, width, v.size());
        return MatrixView<T>(v, 1, v.size());
    }

    // A batch product's shapes: `in` has in_width columns, `out` out_width, and both a row per token.
    static void check_batch(const char* who, MatrixView<const float> in, const std::string& in_name,
                            std::size_t in_width, MatrixView<float> out, const std::string& out_name,
                            std::size_t out_width) {
        check_length(who, ("columns of " + in_name).c_str(), in_width, in.cols());
        check_length(who, ("columns of " + out_name).c_str(), out_width, out.cols());
        check_length(who, ("rows of " + out_name + " (tokens)").c_str(), in.rows(), out.rows());
    }

    // out = sum_k of the terms term(k, products) writes, each into one buffer of out's shape, added
    // in kernel order.
    template <class Term>
    static void sum_over_kernels(MatrixView<float> out, Term&& term) {
        std::vector<float> product(out.data().size());
        const MatrixView<float> products(std::span<float>(product), out.rows(), out.cols());
        std::fill(out.data().begin(), out.data().end(), 0.0f);
        for (std::size_t k = 0; k < K; ++k) {
            term(k, products);
            add(products, out);
        }
    }

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
