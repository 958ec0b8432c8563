#pragma once
// What every backend shares, so that a backend is only its inner loops:
// - ProductEntryPoints<Backend>: the six products of the ProductBackend concept with their shape
//   checks, routed to four hooks the backend defines (forward_products, transposed_products,
//   int8_products, boolean_products); one token is a batch of one.
// - accumulate_rows: the float accumulation y_i = output_scale * sum_k sum_g alpha_k[i,g] * s_k[i,g]
//   behind every product whose group sums s are exact (integer products, and the scalar
//   reference). One chain of fmas per row in kernel-then-group order, so any backend that feeds it
//   the same s gets the same float result, bit for bit.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

// Output rows per unit of work a backend hands to a thread: enough to amortize the hand-off, few
// enough that two threads share a 64-row matrix.
inline constexpr std::size_t row_grain = 16;

template <class Backend>
class ProductEntryPoints {
public:
    // threads: how many threads a product may use (the caller's included, the others from the shared
    // ThreadPool); 0 counts as 1. Not explicit when defaulted, so that `Backend backend = {}`
    // default arguments work.
    ProductEntryPoints() noexcept = default;
    explicit ProductEntryPoints(std::size_t threads) noexcept : threads_(std::max<std::size_t>(threads, 1)) {}
    [[nodiscard]] std::size_t threads() const noexcept { return threads_; }

    template <BitPlaneStorage M>
    void gemv(const M& m, std::span<const float> x, std::span<float> y) const {
        check("gemv", "x", m.cols(), x.size());
        check("gemv", "y", m.rows(), y.size());
        self().forward_products(m, MatrixView<const float>(x, 1, x.size()), MatrixView<float>(y, 1, y.size()));
    }

    // Y = X W_hat^T, one row of X per token.
    template <BitPlaneStorage M>
    void gemm(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        check("gemm", "columns of X", m.cols(), xs.cols());
        check("gemm", "columns of Y", m.rows(), ys.cols());
        check("gemm", "rows of Y (tokens)", xs.rows(), ys.rows());
        self().forward_products(m, xs, ys);
    }

    // dx = W_hat^T dy.
    template <BitPlaneStorage M>
    void gemv_transposed(const M& m, std::span<const float> dy, std::span<float> dx) const {
        check("gemv_transposed", "dy", m.rows(), dy.size());
        check("gemv_transposed", "dx", m.cols(), dx.size());
        self().transposed_products(m, MatrixView<const float>(dy, 1, dy.size()), MatrixView<float>(dx, 1, dx.size()));
    }

    template <BitPlaneStorage M>
    void gemm_transposed(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        check("gemm_transposed", "columns of dY", m.rows(), dys.cols());
        check("gemm_transposed", "columns of dX", m.cols(), dxs.cols());
        check("gemm_transposed", "rows of dX (tokens)", dys.rows(), dxs.rows());
        self().transposed_products(m, dys, dxs);
    }

    // y = W_hat (scale * u), bit-serial over the int8 activations' planes.
    template <BitPlaneStorage M>
    void gemv_int8(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        check("gemv_int8", "x", m.cols(), xq.size());
        check("gemv_int8", "y", m.rows(), y.size());
        self().int8_products(m, xq, y);
    }

    // y = W_hat x for x in {-1, +1}^n, XNOR + popcount.
    template <BitPlaneStorage M>
    void gemv_boolean(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        check("gemv_boolean", "x", m.cols(), xb.size());
        check("gemv_boolean", "y", m.rows(), y.size());
        self().boolean_products(m, xb, y);
    }

protected:
    std::size_t threads_ = 1;

private:
    [[nodiscard]] const Backend& self() const noexcept { return static_cast<const Backend&>(*this); }
    // The message names the backend and the product; it is built only when a length is wrong, so a
    // product's hot path allocates nothing.
    static void check(const char* product, const char* name, std::size_t expected, std::size_t found) {
        if (expected != found) {
            check_length((std::string(Backend::name) + " backend " + product).c_str(), name, expected, found);
        }
    }
};

// Rows interleaved by accumulate_rows: independent fma chains hide each other's latency.
inline constexpr std::size_t accumulation_row_block = 8;

// Rows [begin, end) of y = output_scale * sum_k sum_g alpha_k[i,g] * s_k[i,g], where
// group_sums(i, k, s) writes s_k[i,g] for every group g of row i into s.
template <BitPlaneStorage M, class GroupSums>
void accumulate_rows(const M& m, std::span<float> y, float output_scale, std::size_t begin, std::size_t end,
                     GroupSums&& group_sums) {
    constexpr std::size_t K = M::kernels;
    constexpr std::size_t block = accumulation_row_block;
    const std::size_t groups = m.groups_per_row();
    std::vector<float> sums(block * K * groups);
    const auto sums_of = [&](std::size_t r, std::size_t k) {
        return std::span<float>(sums).subspan((r * K + k) * groups, groups);
    };
    for (std::size_t first = begin; first < end; first += block) {
        const std::size_t rows = std::min(block, end - first);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t k = 0; k < K; ++k) group_sums(first + r, k, sums_of(r, k));
        }
        std::array<float, block> acc{};
        for (std::size_t k = 0; k < K; ++k) {
            std::array<std::span<const typename M::scale_type>, block> alpha;
            for (std::size_t r = 0; r < rows; ++r) alpha[r] = m.scales(k, first + r);
            for (std::size_t g = 0; g < groups; ++g) {
                for (std::size_t r = 0; r < rows; ++r) {
                    acc[r] = std::fma(static_cast<float>(alpha[r][g]), sums[(r * K + k) * groups + g], acc[r]);
                }
            }
        }
        for (std::size_t r = 0; r < rows; ++r) y[first + r] = acc[r] * output_scale;
    }
}

}  // namespace multibool
