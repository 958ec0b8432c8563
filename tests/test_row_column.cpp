#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <multibool/backends/product_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_storage.hpp>
#include <multibool/core/row_column_matrix.hpp>
#include <multibool/core/row_column_serialization.hpp>
#include <multibool/nn/linear_layer.hpp>
#include <multibool/nn/row_column_linear.hpp>
#include <multibool/solvers/row_column_refinement.hpp>
#include <multibool/solvers/svid.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

static_assert(LinearLayer<RowColumnLinear<3>>);
static_assert(LinearLayer<RowColumnLinear<1, std::uint8_t>>);
static_assert(BitPlaneStorage<RowScaledPlane<float, std::uint16_t>>);
static_assert(ProductBackend<ScalarBackend, RowScaledPlane<double, std::uint64_t>>);
static_assert(is_row_column_matrix<RowColumnMatrix<2, double, std::uint32_t>>);
static_assert(!is_row_column_matrix<BitPlaneMatrix<2, 64>>);

namespace {

// Random signs and signed power-of-two scales (1/8 to 2) through from_planes: with small-integer
// activations every product the layer forms is exact in float.
template <class Matrix>
Matrix random_row_column(std::size_t rows, std::size_t cols, std::mt19937_64& rng) {
    using Scale = typename Matrix::scale_type;
    std::bernoulli_distribution coin(0.5);
    std::uniform_int_distribution<int> exponent(-3, 1);
    auto scale = [&] { return static_cast<Scale>((coin(rng) ? 1 : -1) * std::ldexp(1.0, exponent(rng))); };
    std::vector<std::int8_t> signs(Matrix::kernels * rows * cols);
    std::vector<Scale> row_scales(Matrix::kernels * rows);
    std::vector<Scale> column_scales(Matrix::kernels * cols);
    for (auto& s : signs) s = coin(rng) ? 1 : -1;
    for (auto& a : row_scales) a = scale();
    for (auto& a : column_scales) a = scale();
    return Matrix::from_planes(rows, cols, signs, row_scales, column_scales);
}

template <class F, std::size_t... Ks>
void for_each_k(F& f, std::index_sequence<Ks...>) {
    (f.template operator()<Ks + 1>(), ...);
}

// Calls f.template operator()<K>() for K in 1..4.
template <class F>
void for_each_k(F&& f) {
    for_each_k(f, std::make_index_sequence<4>{});
}

// Y = X W^T in double for a dense row-major rows x cols W and tokens x cols X.
std::vector<double> dense_product(const std::vector<float>& w, std::size_t rows, std::size_t cols,
                                  const std::vector<float>& xs, bool transposed) {
    const std::size_t in = transposed ? rows : cols;
    const std::size_t out = transposed ? cols : rows;
    const std::size_t tokens = xs.size() / in;
    std::vector<double> ys(tokens * out, 0.0);
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                const double wij = w[i * cols + j];
                if (transposed) {
                    ys[t * out + j] += wij * xs[t * in + i];
                } else {
                    ys[t * out + i] += wij * xs[t * in + j];
                }
            }
        }
    }
    return ys;
}

double squared_error(const std::vector<float>& w, const std::vector<float>& w_hat) {
    double e = 0.0;
    for (std::size_t k = 0; k < w.size(); ++k) e += std::pow(double(w[k]) - double(w_hat[k]), 2);
    return e;
}

// Gaussian weights with a few columns 8x larger: the input-channel outliers of real models.
std::vector<float> weights_with_outlier_columns(std::size_t rows, std::size_t cols, std::mt19937_64& rng) {
    auto w = testing::random_floats(rows * cols, rng);
    for (std::size_t j = 3; j < cols; j += 37) {
        for (std::size_t i = 0; i < rows; ++i) w[i * cols + j] *= 8.0f;
    }
    return w;
}

// Eigenvalues of a symmetric n x n matrix by cyclic Jacobi rotations: an independent check of
// the power iteration.
std::vector<double> jacobi_eigenvalues(std::vector<double> a, std::size_t n) {
    for (int sweep = 0; sweep < 100; ++sweep) {
        double off = 0.0;
        for (std::size_t p = 0; p < n; ++p) {
            for (std::size_t q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
        }
        if (off < 1e-26) break;
        for (std::size_t p = 0; p < n; ++p) {
            for (std::size_t q = p + 1; q < n; ++q) {
                if (a[p * n + q] == 0.0) continue;
                const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * a[p * n + q]);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
                const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
                for (std::size_t r = 0; r < n; ++r) {  // columns p, q
                    const double arp = a[r * n + p], arq = a[r * n + q];
                    a[r * n + p] = c * arp - s * arq;
                    a[r * n + q] = s * arp + c * arq;
                }
                for (std::size_t r = 0; r < n; ++r) {  // rows p, q
                    const double apr = a[p * n + r], aqr = a[q * n + r];
                    a[p * n + r] = c * apr - s * aqr;
                    a[q * n + r] = s * apr + c * aqr;
                }
            }
        }
    }
    std::vector<double> eigenvalues(n);
    for (std::size_t p = 0; p < n; ++p) eigenvalues[p] = a[p * n + p];
    return eigenvalues;
}

}  // namespace

TEST_CASE("RowColumnMatrix holds the signs and scales it is given", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (std::size_t cols : {1u, 7u, 100u, 172u}) {
        CAPTURE(cols);
        using Matrix = RowColumnMatrix<3, float, std::uint16_t>;
        const std::size_t rows = 5;
        std::vector<std::int8_t> signs(3 * rows * cols);
        std::vector<float> row_scales(3 * rows), column_scales(3 * cols);
        std::bernoulli_distribution coin(0.5);
        std::uniform_real_distribution<float> magnitude(-2.0f, 2.0f);
        for (auto& s : signs) s = coin(rng) ? 1 : -1;
        for (auto& a : row_scales) a = magnitude(rng);
        for (auto& a : column_scales) a = magnitude(rng);
        const auto m = Matrix::from_planes(rows, cols, signs, row_scales, column_scales);
        REQUIRE(m.rows() == rows);
        REQUIRE(m.cols() == cols);
        const auto dense = m.dequantize();
        for (std::size_t k = 0; k < 3; ++k) {
            REQUIRE(std::equal(m.row_scales(k).begin(), m.row_scales(k).end(), row_scales.begin() + k * rows));
            REQUIRE(std::equal(m.column_scales(k).begin(), m.column_scales(k).end(), column_scales.begin() + k * cols));
        }
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                double w = 0.0;
                for (std::size_t k = 0; k < 3; ++k) {
                    REQUIRE(m.sign(k, i, j) == signs[(k * rows + i) * cols + j]);
                    w += double(row_scales[k * rows + i]) * double(column_scales[k * cols + j]) *
                         signs[(k * rows + i) * cols + j];
                }
                REQUIRE(m.weight(i, j) == Approx(w).margin(1e-12));
                REQUIRE(dense[i * cols + j] == static_cast<float>(m.weight(i, j)));
            }
        }
    }
}

TEST_CASE("RowColumnMatrix setters change one value and keep padding clear", "[rowcol]") {
    RowColumnMatrix<2, float, std::uint8_t> m(3, 11);
    REQUIRE(m.dequantize() == std::vector<float>(33, 0.0f));
    m.set_row_scale(1, 2, 0.5f);
    m.set_column_scale(1, 10, 4.0f);
    REQUIRE(m.weight(2, 10) == -2.0);
    m.flip(1, 2, 10);
    REQUIRE(m.weight(2, 10) == 2.0);
    m.set_sign(1, 2, 10, -1);
    REQUIRE(m.sign(1, 2, 10) == -1);
    for (std::size_t i = 0; i < 3; ++i) m.set_sign(0, i, 10, 1);
    for (std::size_t i = 0; i < 3; ++i) REQUIRE(m.plane_row(0, i).back() == std::uint8_t{0x04});
    const auto moved = std::move(m);
    REQUIRE(moved.weight(2, 10) == -2.0);
    REQUIRE(m.rows() == 0);  // NOLINT(bugprone-use-after-move): a moved-from matrix is 0x0
    REQUIRE(m.cols() == 0);
}

TEST_CASE("bits per weight counts the planes with their padding and (m + n) scales per kernel", "[rowcol]") {
    const RowColumnMatrix<3> square(4096, 4096);
    REQUIRE(square.storage_bytes() == 3 * 4096 * 4096 / 8 + 3 * (4096 + 4096) * 4);
    REQUIRE(square.bits_per_weight() == 3.0 + 3.0 * 8192.0 * 32.0 / (4096.0 * 4096.0));
    // 100 columns take two 64-bit words per row: 128 bits stored for 100 weights.
    const RowColumnMatrix<2, double, std::uint64_t> ragged(6, 100);
    REQUIRE(ragged.storage_bytes() == 2 * 6 * 2 * 8 + 2 * (6 + 100) * 8);
    REQUIRE(ragged.bits_per_weight() == Approx(8.0 * (2 * 6 * 16 + 2 * 106 * 8) / 600.0));
    const RowColumnMatrix<1, float, std::uint8_t> bytes(6, 100);
    REQUIRE(bytes.storage_bytes() == 6 * 13 + (6 + 100) * 4);
    REQUIRE(RowColumnMatrix<1>().bits_per_weight() == 0.0);
}

TEST_CASE("RowColumnMatrix refuses non-finite scales, wrong sizes and set padding", "[rowcol]") {
    using Matrix = RowColumnMatrix<2, float, std::uint8_t>;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<std::int8_t> signs(2 * 3 * 5, 1);
    std::vector<float> row_scales(6, 1.0f), column_scales(10, 1.0f);
    REQUIRE_NOTHROW(Matrix::from_planes(3, 5, signs, row_scales, column_scales));
    row_scales[5] = nan;
    REQUIRE_THROWS_WITH(Matrix::from_planes(3, 5, signs, row_scales, column_scales),
                        "RowColumnMatrix 3x5: row scale of kernel 1 row 2 is nan, not a finite number");
    row_scales[5] = 1.0f;
    column_scales[6] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(Matrix::from_planes(3, 5, signs, row_scales, column_scales),
                        "RowColumnMatrix 3x5: column scale of kernel 1 column 1 is inf, not a finite number");
    column_scales[6] = 1.0f;
    REQUIRE_THROWS_WITH(Matrix::from_planes(3, 5, signs, std::span<const float>(row_scales).first(5), column_scales),
                        "RowColumnMatrix 3x5: expected 6 row scales, got 5");
    REQUIRE_THROWS_WITH(
        Matrix::from_planes(3, 5, std::span<const std::int8_t>(signs).first(29), row_scales, column_scales),
        Catch::Contains("expected 30 signs"));
    Matrix m(3, 5);
    REQUIRE_THROWS_WITH(m.set_column_scale(0, 4, nan), Catch::Contains("column scale of kernel 0 column 4 is nan"));
    REQUIRE_THROWS_WITH(m.set_row_scale(1, 0, nan), Catch::Contains("row scale of kernel 1 row 0 is nan"));
    REQUIRE(m == Matrix(3, 5));
    std::vector<std::uint8_t> words(2 * 3, 0);
    words[4] = 0x20;  // column 5 of a 5-column row: padding
    REQUIRE_THROWS_WITH(Matrix(3, 5, words, row_scales, column_scales), Catch::Contains("padding bits set"));
    REQUIRE_THROWS_WITH(Matrix(3, 0), "RowColumnMatrix 3x0: a matrix with rows needs at least one column");
    REQUIRE_NOTHROW(Matrix(0, 4));
    // Finite row and column scales whose product overflows float (1e20 x 1e20) would dequantize to inf.
    auto huge_rows = row_scales, huge_columns = column_scales;
    huge_rows[2] = 1e20f;
    huge_columns[3] = -1e20f;
    REQUIRE_THROWS_WITH(Matrix(3, 5, std::vector<std::uint8_t>(2 * 3, 0), huge_rows, huge_columns),
                        Catch::Contains("beyond float"));
    REQUIRE_NOTHROW(Matrix(3, 5, std::vector<std::uint8_t>(2 * 3, 0), huge_rows, column_scales));
}

TEST_CASE("RowColumnLinear computes the dense product of its dequantized weight exactly", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto check = [&]<class Word, std::size_t K>() {
        for (std::size_t cols : {1u, 100u, 172u}) {
            CAPTURE(K, sizeof(Word), cols);
            const std::size_t rows = 9, tokens = 3;
            const RowColumnLinear<K, Word> layer(random_row_column<RowColumnMatrix<K, float, Word>>(rows, cols, rng));
            REQUIRE(layer.in_features() == cols);
            REQUIRE(layer.out_features() == rows);
            const auto w_hat = layer.weights().dequantize();

            const auto xs = testing::small_integers(tokens * cols, rng);
            const auto expected = dense_product(w_hat, rows, cols, xs, false);
            std::vector<float> ys(tokens * rows, -1.0f);
            layer.forward(MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                          MatrixView<float>(std::span<float>(ys), tokens, rows));
            for (std::size_t e = 0; e < ys.size(); ++e) REQUIRE(double(ys[e]) == expected[e]);
            std::vector<float> y(rows, -1.0f);
            layer.forward(std::span<const float>(xs).first(cols), y);
            for (std::size_t i = 0; i < rows; ++i) REQUIRE(double(y[i]) == expected[i]);

            const auto dys = testing::small_integers(tokens * rows, rng);
            const auto expected_dx = dense_product(w_hat, rows, cols, dys, true);
            std::vector<float> dxs(tokens * cols, -1.0f);
            layer.backward_input(MatrixView<const float>(std::span<const float>(dys), tokens, rows),
                                 MatrixView<float>(std::span<float>(dxs), tokens, cols));
            for (std::size_t e = 0; e < dxs.size(); ++e) REQUIRE(double(dxs[e]) == expected_dx[e]);
            std::vector<float> dx(cols, -1.0f);
            layer.backward_input(std::span<const float>(dys).first(rows), dx);
            for (std::size_t j = 0; j < cols; ++j) REQUIRE(double(dx[j]) == expected_dx[j]);
        }
    };
    auto for_words = [&]<std::size_t K>() {
        check.template operator()<std::uint8_t, K>();
        check.template operator()<std::uint64_t, K>();
    };
    for_each_k(for_words);
    check.template operator()<std::uint16_t, 2>();
    check.template operator()<std::uint32_t, 3>();
}

TEST_CASE("RowColumnLinear on real-valued data agrees with float64 and refuses wrong shapes", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 24, cols = 300, tokens = 4;
    const auto w = testing::random_floats(rows * cols, rng);
    const auto layer = RowColumnLinear<3>::from_dense({std::span<const float>(w), rows, cols});
    const auto w_hat = layer.weights().dequantize();
    const auto xs = testing::random_floats(tokens * cols, rng);
    const auto expected = dense_product(w_hat, rows, cols, xs, false);
    std::vector<float> ys(tokens * rows);
    layer.forward(MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                  MatrixView<float>(std::span<float>(ys), tokens, rows));
    for (std::size_t e = 0; e < ys.size(); ++e) REQUIRE(ys[e] == Approx(expected[e]).margin(1e-4));

    std::vector<float> x(cols + 1), y(rows);
    REQUIRE_THROWS_WITH(layer.forward(x, y), "RowColumnLinear::forward: x has 301 elements, expected 300");
    REQUIRE_THROWS_WITH(layer.backward_input(y, x),
                        "RowColumnLinear::backward_input: dx has 301 elements, expected 300");
    std::vector<float> ys_short(3 * rows);
    REQUIRE_THROWS_WITH(layer.forward(MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                                      MatrixView<float>(std::span<float>(ys_short), 3, rows)),
                        Catch::Contains("rows of Y (tokens) has 3 elements, expected 4"));
}

TEST_CASE("svid_residual reproduces a matrix whose magnitudes have rank 1", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 13, cols = 100;
    std::uniform_real_distribution<float> magnitude(0.25f, 4.0f);
    std::bernoulli_distribution coin(0.5);
    std::vector<float> a(rows), b(cols), w(rows * cols);
    for (auto& x : a) x = magnitude(rng);
    for (auto& x : b) x = magnitude(rng);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) w[i * cols + j] = (coin(rng) ? 1.0f : -1.0f) * a[i] * b[j];
    }
    const MatrixView<const float> view(std::span<const float>(w), rows, cols);
    const auto one = svid_residual<RowColumnMatrix<1>>(view);
    REQUIRE(testing::relative_frobenius_error(w, one.dequantize()) < 1e-6);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) REQUIRE(one.sign(0, i, j) == (w[i * cols + j] >= 0 ? 1 : -1));
    }
    // The split is balanced: both factors carry sqrt(sigma).
    double row_norm = 0.0, column_norm = 0.0;
    for (float s : one.row_scales(0)) row_norm += double(s) * s;
    for (float s : one.column_scales(0)) column_norm += double(s) * s;
    REQUIRE(row_norm == Approx(column_norm).epsilon(1e-6));
    // Nothing is left for a second kernel but the rounding of W to float.
    const auto two = svid_residual<RowColumnMatrix<2, double, std::uint8_t>>(view);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) REQUIRE(std::fabs(two.row_scale(1, i) * two.column_scale(1, j)) < 1e-5);
    }
}

TEST_CASE("svid_residual's first kernel is the top singular pair of |W|", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    int compared = 0;
    for (int trial = 0; trial < 20; ++trial) {
        const std::size_t rows = 3 + trial % 6, cols = 2 + trial % 5;
        CAPTURE(trial, rows, cols);
        auto w = testing::random_floats(rows * cols, rng);
        w[0] = 0.0f;  // sign(0) = +1
        const auto m =
            svid_residual<RowColumnMatrix<1, double, std::uint64_t>>({std::span<const float>(w), rows, cols});
        REQUIRE(m.sign(0, 0, 0) == 1);
        std::vector<double> gram(cols * cols, 0.0);
        for (std::size_t p = 0; p < cols; ++p) {
            for (std::size_t q = 0; q < cols; ++q) {
                for (std::size_t i = 0; i < rows; ++i) {
                    gram[p * cols + q] += std::fabs(double(w[i * cols + p])) * std::fabs(double(w[i * cols + q]));
                }
            }
        }
        auto eigenvalues = jacobi_eigenvalues(gram, cols);
        std::sort(eigenvalues.rbegin(), eigenvalues.rend());
        const double sigma_squared = eigenvalues[0];
        // Power iteration gains a factor lambda_2 / lambda_1 per step; a near tie is not a test of it.
        if (eigenvalues[1] > 0.97 * sigma_squared) continue;
        ++compared;
        double row_norm = 0.0, column_norm = 0.0;
        for (double s : m.row_scales(0)) row_norm += s * s;
        for (double s : m.column_scales(0)) column_norm += s * s;
        // ||s_out s_in^T||_F = sigma_1, and s_in is the top eigenvector of |W|^T |W|.
        REQUIRE(row_norm * column_norm == Approx(sigma_squared).epsilon(1e-9));
        std::vector<double> gram_times_s_in(cols, 0.0);
        for (std::size_t p = 0; p < cols; ++p) {
            for (std::size_t q = 0; q < cols; ++q) gram_times_s_in[p] += gram[p * cols + q] * m.column_scale(0, q);
        }
        for (std::size_t p = 0; p < cols; ++p) {
            REQUIRE(m.column_scale(0, p) >= 0.0);
            REQUIRE(gram_times_s_in[p] == Approx(sigma_squared * m.column_scale(0, p)).margin(1e-9 * sigma_squared));
        }
    }
    REQUIRE(compared >= 15);
}

TEST_CASE("svid_group_init averages the rank-1 magnitudes over each group", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 6, cols = 100;
    const auto w = testing::random_floats(rows * cols, rng);
    const MatrixView<const float> view(std::span<const float>(w), rows, cols);
    const auto rc = svid_residual<RowColumnMatrix<2>>(view);
    const auto grouped = svid_group_init<BitPlaneMatrix<2, 64>>(view);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) REQUIRE(grouped.sign(0, i, j) == rc.sign(0, i, j));
        for (std::size_t g = 0; g < 2; ++g) {
            double mean = 0.0;
            for (std::size_t j = grouped.group_begin(g); j < grouped.group_end(g); ++j) mean += rc.column_scale(0, j);
            mean /= double(grouped.group_end(g) - grouped.group_begin(g));  // 64, then the ragged 36
            REQUIRE(grouped.scale(0, i, g) == Approx(rc.row_scale(0, i) * mean).epsilon(1e-5));
        }
    }
    // Column magnitudes constant within each group: one group-scaled kernel is exact.
    std::vector<float> piecewise(rows * cols);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) {
            piecewise[i * cols + j] = (w[i * cols + j] >= 0 ? 1.0f : -1.0f) * float(i + 1) * (j < 64 ? 0.5f : 3.0f);
        }
    }
    const auto exact = svid_group_init<BitPlaneMatrix<1, 64>>({std::span<const float>(piecewise), rows, cols});
    REQUIRE(testing::relative_frobenius_error(piecewise, exact.dequantize()) < 1e-6);
}

TEST_CASE("SVID initializers refuse non-finite weights and handle the zero matrix", "[rowcol]") {
    std::vector<float> w(4 * 6, 0.0f);
    const MatrixView<const float> view(std::span<const float>(w), 4, 6);
    const auto zero = svid_residual<RowColumnMatrix<3>>(view);
    REQUIRE(zero.dequantize() == w);
    REQUIRE(svid_group_init<BitPlaneMatrix<2, 4>>(view).dequantize() == w);
    w[9] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(svid_residual<RowColumnMatrix<3>>(view),
                        "svid_residual: weight at row 1 col 3 of a 4x6 matrix is nan, not a finite number");
    REQUIRE_THROWS_WITH((svid_group_init<BitPlaneMatrix<2, 4>>(view)), Catch::Contains("row 1 col 3"));
}

TEST_CASE("refinement never increases the weight-space error and improves on SVID", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto check = [&]<std::size_t K>() {
        for (int trial = 0; trial < 12; ++trial) {
            const std::size_t rows = 5 + trial * 3, cols = 20 + trial * 13;
            CAPTURE(K, trial, rows, cols);
            const auto w = weights_with_outlier_columns(rows, cols, rng);
            const MatrixView<const float> view(std::span<const float>(w), rows, cols);
            auto m = svid_residual<RowColumnMatrix<K>>(view);
            const double start = squared_error(w, m.dequantize());
            const auto trace = refine_row_column(m, view, 4);
            REQUIRE(trace.size() == 1 + 3 * 4);
            REQUIRE(trace.front() == Approx(start).epsilon(1e-5));
            for (std::size_t s = 1; s < trace.size(); ++s) REQUIRE(trace[s] <= trace[s - 1]);
            if (K == 1) {
                // With B = sign(W), the best rank-1 fit of |W| is already the least-squares optimum.
                REQUIRE(trace.back() == Approx(trace.front()).epsilon(1e-6));
            } else {
                REQUIRE(trace.back() < 0.99 * trace.front());
            }
            REQUIRE(squared_error(w, m.dequantize()) == Approx(trace.back()).epsilon(1e-5));
        }
    };
    for_each_k(check);
}

TEST_CASE("refinement stays finite on singular systems", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 7, cols = 30;
    auto w = testing::random_floats(rows * cols, rng);
    const MatrixView<const float> view(std::span<const float>(w), rows, cols);
    // Two identical kernels: every Gram matrix is singular.
    std::vector<std::int8_t> signs(2 * rows * cols);
    std::bernoulli_distribution coin(0.5);
    for (std::size_t e = 0; e < rows * cols; ++e) signs[e] = signs[rows * cols + e] = coin(rng) ? 1 : -1;
    std::vector<float> row_scales(2 * rows, 0.5f), column_scales(2 * cols, 0.25f);
    auto twins = RowColumnMatrix<2>::from_planes(rows, cols, signs, row_scales, column_scales);
    const auto trace = refine_row_column(twins, view, 3);
    for (std::size_t s = 1; s < trace.size(); ++s) REQUIRE(trace[s] <= trace[s - 1]);
    for (float x : twins.dequantize()) REQUIRE(std::isfinite(x));
    // All scales zero, and then an all-zero W: nothing to solve, nothing breaks.
    RowColumnMatrix<3> zero(rows, cols);
    for (double e : refine_row_column(zero, view, 2)) REQUIRE(e == Approx(squared_error(w, zero.dequantize())));
    std::fill(w.begin(), w.end(), 0.0f);
    auto from_zero = svid_residual<RowColumnMatrix<3>>(view);
    for (double e : refine_row_column(from_zero, view, 2)) REQUIRE(e == 0.0);

    RowColumnMatrix<1> wrong(rows, cols + 1);
    REQUIRE_THROWS_WITH(refine_row_column(wrong, view, 1), "refine_row_column: weights are 7x30, the matrix is 7x31");
}

TEST_CASE("RowColumnMatrix records round-trip and name the field that differs", "[rowcol]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto round_trip = [&]<class Matrix>() {
        for (std::size_t cols : {1u, 100u, 172u}) {
            const auto m = random_row_column<Matrix>(3, cols, rng);
            const auto bytes = testing::to_bytes(m);
            // Header (8 + 4 * 4 + 3 * 8), payload, checksum.
            REQUIRE(bytes.size() == 48 + m.storage_bytes() + 8);
            REQUIRE(bytes.substr(0, 8) == "MBOOLRCM");
            REQUIRE(testing::from_bytes<Matrix>(bytes) == m);
        }
    };
    auto for_words = [&]<std::size_t K>() {
        round_trip.template operator()<RowColumnMatrix<K, float, std::uint8_t>>();
        round_trip.template operator()<RowColumnMatrix<K, float, std::uint64_t>>();
    };
    for_each_k(for_words);
    round_trip.operator()<RowColumnMatrix<3, double, std::uint32_t>>();
    round_trip.operator()<RowColumnMatrix<2, half, std::uint16_t>>();

    const auto bytes = testing::to_bytes(random_row_column<RowColumnMatrix<2, float, std::uint32_t>>(3, 70, rng));
    REQUIRE_THROWS_WITH((testing::from_bytes<RowColumnMatrix<3, float, std::uint32_t>>(bytes)),
                        "memory: field 'kernels': expected 3, found 2");
    REQUIRE_THROWS_WITH((testing::from_bytes<RowColumnMatrix<2, float, std::uint64_t>>(bytes)),
                        "memory: field 'word_bits': expected 64, found 32");
    REQUIRE_THROWS_WITH((testing::from_bytes<RowColumnMatrix<2, double, std::uint32_t>>(bytes)),
                        "memory: field 'scale_type': expected 2, found 1");
    // A group-scale record is not a row x column one, and the other way round.
    REQUIRE_THROWS_WITH((testing::from_bytes<RowColumnMatrix<2, float, std::uint32_t>>(testing::to_bytes(
                            testing::random_matrix<BitPlaneMatrix<2, per_row, float, std::uint32_t>>(3, 70, rng)))),
                        Catch::Contains("field 'magic'") && Catch::Contains("MBOOLBPM"));
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, per_row, float, std::uint32_t>>(bytes)),
                        Catch::Contains("field 'magic'"));

    std::stringstream stream(std::ios::in | std::ios::out | std::ios::binary);
    const auto a = random_row_column<RowColumnMatrix<2>>(4, 100, rng);
    const auto b = random_row_column<RowColumnMatrix<2>>(2, 7, rng);
    save(a, stream);
    save(b, stream);
    REQUIRE(load<RowColumnMatrix<2>>(stream, "stream") == a);
    REQUIRE(load<RowColumnMatrix<2>>(stream, "stream") == b);

    const auto path = std::filesystem::temp_directory_path() /
                      ("multibool-test-" + std::to_string(fresh_seed()) + "-row-column.mbool");
    save(a, path);
    REQUIRE(load<RowColumnMatrix<2>>(path) == a);
    {
        std::ofstream append(path, std::ios::binary | std::ios::app);
        append << "x";
    }
    REQUIRE_THROWS_WITH((load<RowColumnMatrix<2>>(path)), Catch::Contains("end of file"));
    std::filesystem::remove(path);
}

TEST_CASE("every truncation and corruption of a RowColumnMatrix record is detected", "[rowcol]") {
    using Matrix = RowColumnMatrix<2, float, std::uint16_t>;
    std::mt19937_64 rng(fresh_seed());
    const auto bytes = testing::to_bytes(random_row_column<Matrix>(3, 21, rng));
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        CAPTURE(length);
        REQUIRE_THROWS_AS((testing::from_bytes<Matrix>(bytes.substr(0, length))), FormatError);
    }
    // Header, then 2 kernels x 3 rows x 2 words of 16 bits, then the row scales.
    const std::size_t row_scales_at = 48 + 2 * 3 * 2 * 2;
    REQUIRE_THROWS_WITH((testing::from_bytes<Matrix>(bytes.substr(0, row_scales_at))),
                        Catch::Contains("field 'payload (row scales)'") && Catch::Contains("truncated"));
    for (std::size_t position = 0; position < bytes.size(); ++position) {
        for (int bit : {0, 7}) {
            CAPTURE(position, bit);
            auto corrupt = bytes;
            corrupt[position] = static_cast<char>(corrupt[position] ^ (1 << bit));
            REQUIRE_THROWS_AS((testing::from_bytes<Matrix>(corrupt)), FormatError);
        }
    }
    // A NaN scale under a correct checksum is refused as an invalid payload.
    auto nan_scale = bytes.substr(0, bytes.size() - 8);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    nan_scale.replace(row_scales_at, 4, reinterpret_cast<const char*>(&nan), 4);
    Fnv1a h;
    h.update(std::as_bytes(std::span<const char>(nan_scale.data(), nan_scale.size())));
    const std::uint64_t checksum = h.value();
    nan_scale += std::string(reinterpret_cast<const char*>(&checksum), sizeof checksum);
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(nan_scale),
                        Catch::Contains("field 'payload'") && Catch::Contains("row scale of kernel 0 row 0 is nan"));
}
