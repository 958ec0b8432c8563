#pragma once
// Checks shared by the static and the dynamic-dispatch table-lookup tests: exact equality when the
// int8 tables are exact, and the proven error bound otherwise, for any backend whose gemv/gemm take
// the packed matrix.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/matrix_view.hpp>

#include "test_support.hpp"

namespace multibool::testing {

// |y_lookup - y_exact| <= sum over blocks and kernels of |alpha| * unit * 0.5 per chunk lookup:
// each int8 table entry is off by at most half a unit, unit = largest chunk sum of |x| / 127.
template <class Matrix, class Packed>
std::vector<double> table_error_bound(const Matrix& m, const Packed& packed, std::span<const float> x) {
    std::vector<double> bound(m.rows(), 0.0);
    for (const auto& block : packed.blocks()) {
        double largest = 0.0;
        for (std::size_t c0 = block.begin; c0 < block.end; c0 += 4) {
            double magnitude = 0.0;
            for (std::size_t j = c0; j < std::min(block.end, c0 + 4); ++j) magnitude += std::fabs(double(x[j]));
            largest = std::max(largest, magnitude);
        }
        const double per_lookup = 0.5 * largest / 127.0 * (1.0 + 1e-6);
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                bound[i] += std::fabs(double(m.scales(k, i)[block.group])) * per_lookup * 2.0 * double(block.pairs);
            }
        }
    }
    return bound;
}

// With one chunk of |x| sums equal to 127 in every block the table unit is 1 and every entry
// an exact integer: the result must then equal the (exact) scalar reference.
template <class Backend, class Matrix, class Packed>
void check_exact_tables(const Backend& backend, const Matrix& m, const Packed& packed, std::mt19937_64& rng) {
    auto x = small_integers(m.cols(), rng);
    for (const auto& block : packed.blocks()) {
        std::fill(x.begin() + block.begin, x.begin() + std::min(block.end, block.begin + 4), 0.0f);
        x[block.begin] = 127.0f;
    }
    std::vector<float> expected(m.rows()), y(m.rows());
    ScalarBackend{}.gemv(m, x, expected);
    backend.gemv(packed, x, y);
    REQUIRE(y == expected);
}

// For every token of the batch product ys = xs W_hat^T: the token's product alone
// (one_token(x, y)) equals its row of ys to the bit (the same arithmetic), and stays within
// bound_of(x) of the dense float product.
template <class Matrix, class Bound, class OneToken>
void check_tokens(const Matrix& m, std::span<const float> xs, std::span<const float> ys, Bound bound_of,
                  OneToken one_token) {
    const auto dense = m.dequantize();
    for (std::size_t t = 0; t < xs.size() / m.cols(); ++t) {
        const std::span<const float> x(xs.data() + t * m.cols(), m.cols());
        const auto reference = dense_gemv(dense, m.rows(), m.cols(), x);
        const auto bound = bound_of(x);
        std::vector<float> y(m.rows());
        one_token(x, std::span<float>(y));
        for (std::size_t i = 0; i < m.rows(); ++i) {
            CAPTURE(t, i);
            REQUIRE(ys[t * m.rows() + i] == y[i]);
            double magnitude = 0.0;
            for (std::size_t j = 0; j < m.cols(); ++j) magnitude += std::fabs(dense[i * m.cols() + j] * x[j]);
            REQUIRE(std::fabs(double(y[i]) - reference[i]) <= bound[i] + 1e-5 * magnitude);
        }
    }
}

template <class Backend, class Matrix, class Packed>
void check_error_bound(const Backend& backend, const Matrix& m, const Packed& packed, std::mt19937_64& rng) {
    constexpr std::size_t tokens = 3;
    const auto xs = random_floats(tokens * m.cols(), rng);
    std::vector<float> ys(tokens * m.rows());
    backend.gemm(packed, MatrixView<const float>(std::span<const float>(xs), tokens, m.cols()),
                 MatrixView<float>(std::span<float>(ys), tokens, m.rows()));
    check_tokens(
        m, xs, ys, [&](std::span<const float> x) { return table_error_bound(m, packed, x); },
        [&](std::span<const float> x, std::span<float> y) { backend.gemv(packed, x, y); });
}

// Level expansion (level_expansion.hpp): weights on a grid s = sum_k |alpha_k| / (127 - floor(K/2))
// per row and group, rounded per kernel (off by at most K s / 2), activations on u = max |x| /
// 127 per block (off by at most u / 2, and |level| <= 127), so per output
// |y - y_exact| <= sum over blocks, columns of (K s / 2) |x_j| + 127 s u / 2.
template <class Matrix, class Packed>
std::vector<double> level_expansion_error_bound(const Matrix& m, const Packed& packed, std::span<const float> x) {
    constexpr std::size_t K = Matrix::kernels;
    std::vector<double> bound(m.rows(), 0.0);
    for (const auto& block : packed.blocks()) {
        double largest = 0.0, magnitude = 0.0;
        for (std::size_t j = block.begin; j < block.end; ++j) {
            largest = std::max(largest, std::fabs(double(x[j])));
            magnitude += std::fabs(double(x[j]));
        }
        const double unit = largest / 127.0;
        for (std::size_t i = 0; i < m.rows(); ++i) {
            double total = 0.0;
            for (std::size_t k = 0; k < K; ++k) total += std::fabs(double(m.scales(k, i)[block.group]));
            const double grid = total / double(127 - int(K / 2));
            bound[i] +=
                (0.5 * double(K) * grid * magnitude + 0.5 * 127.0 * grid * unit * double(block.end - block.begin)) *
                (1.0 + 1e-5);
        }
    }
    return bound;
}

// product(packed, xs, ys, threads) runs level expansion. Checks the bound against the dense float product,
// that a batch equals its tokens one by one and any thread count, bit for bit.
template <class Matrix, class Packed, class Product>
void check_level_expansion(const Matrix& m, const Packed& packed, std::mt19937_64& rng, Product product) {
    constexpr std::size_t tokens = 14;
    const auto xs = random_floats(tokens * m.cols(), rng);
    std::vector<float> ys(tokens * m.rows());
    const MatrixView<const float> x_view(std::span<const float>(xs), tokens, m.cols());
    product(packed, x_view, MatrixView<float>(std::span<float>(ys), tokens, m.rows()), 1);
    std::vector<float> threaded(tokens * m.rows());
    product(packed, x_view, MatrixView<float>(std::span<float>(threaded), tokens, m.rows()), 3);
    REQUIRE(threaded == ys);
    check_tokens(
        m, xs, ys, [&](std::span<const float> x) { return level_expansion_error_bound(m, packed, x); },
        [&](std::span<const float> x, std::span<float> y) {
            product(packed, MatrixView<const float>(x, 1, x.size()), MatrixView<float>(y, 1, y.size()), 1);
        });
}

// With sum_k |alpha_k| = 127 - floor(K/2) in integers the weight grid is 1, and with integer
// activations whose block maximum is 127 the activation unit is 1: level expansion is then exact
// and equals the scalar reference.
template <class Packed, class Matrix, class Product>
void check_exact_level_expansion(Matrix m, std::size_t tile_rows, std::mt19937_64& rng, Product product) {
    constexpr std::size_t K = Matrix::kernels;
    using Scale = typename Matrix::scale_type;
    constexpr int limit = 127 - int(K / 2);
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            for (std::size_t k = 0; k < K; ++k) {
                const int magnitude = k == 0 ? limit - int(K - 1) : 1;
                m.set_scale(k, i, g, Scale(float(rng() % 2 ? magnitude : -magnitude)));
            }
        }
    }
    const Packed packed(m, tile_rows);
    auto x = small_integers(m.cols(), rng);
    for (const auto& block : packed.blocks()) x[block.begin] = 127.0f;
    std::vector<float> expected(m.rows()), y(m.rows());
    ScalarBackend{}.gemv(m, x, expected);
    product(packed, MatrixView<const float>(std::span<const float>(x), 1, m.cols()),
            MatrixView<float>(std::span<float>(y), 1, m.rows()), 1);
    REQUIRE(y == expected);
}

}  // namespace multibool::testing
