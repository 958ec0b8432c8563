#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/nn/dense_linear.hpp>
#include <multibool/nn/linear_layer.hpp>
#include <multibool/nn/multibool_linear.hpp>
#include <multibool/nn/variable_kernel_linear.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

static_assert(LinearLayer<MultiBoolLinear<3, 128>>);
static_assert(LinearLayer<MultiBoolLinear<1, per_row, float, std::uint8_t>>);
static_assert(LinearLayer<DenseLinear>);

namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0.0;
    for (std::size_t e = 0; e < a.size(); ++e) s += double(a[e]) * double(b[e]);
    return s;
}

}  // namespace

TEST_CASE("DenseLinear matches a float64 product and its adjoint", "[nn]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 7, cols = 33;
    const auto w = testing::random_floats(rows * cols, rng);
    const DenseLinear layer({std::span<const float>(w), rows, cols});
    const auto x = testing::random_floats(cols, rng);
    std::vector<float> y(rows);
    layer.forward(x, y);
    const auto reference = testing::dense_gemv(w, rows, cols, x);
    for (std::size_t i = 0; i < rows; ++i) REQUIRE(y[i] == Approx(reference[i]).margin(1e-4));
    // <dy, W x> = <W^T dy, x>. The two sides may cancel to a small number, so the float32 rounding
    // is bounded against sum_ij |dy_i w_ij x_j|, not against the result.
    const auto dy = testing::random_floats(rows, rng);
    std::vector<float> dx(cols);
    layer.backward_input(dy, dx);
    double magnitude = 0.0;
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < cols; ++j) magnitude += std::abs(double(dy[i]) * w[i * cols + j] * x[j]);
    REQUIRE(dot(dy, y) == Approx(dot(dx, x)).margin(1e-5 * magnitude));
}

// The default backend may be the table-lookup one, whose forward products round activations to
// int8 tables (error bound proven in test_lookup_table.cpp); 1 % of sum_j |w_hat_ij x_j| is far
// above that bound for random inputs and far below any real mistake. Exact backends get 1e-4.
TEMPLATE_TEST_CASE("MultiBoolLinear<3, 128> computes the dense product of its dequantized weight", "[nn]",
                   ScalarBackend, DefaultBackend) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 24, cols = 300, tokens = 4;
    const auto w = testing::random_floats(rows * cols, rng);
    using Layer = MultiBoolLinear<3, 128, float, std::uint64_t, TestType>;
    constexpr bool approximate = PrepackingBackend<TestType, typename Layer::matrix_type>;
    const auto layer = Layer::from_dense({std::span<const float>(w), rows, cols});
    REQUIRE(layer.in_features() == cols);
    REQUIRE(layer.out_features() == rows);
    const auto w_hat = layer.weights().dequantize();
    const DenseLinear teacher({std::span<const float>(w_hat), rows, cols});

    const auto xs = testing::random_floats(tokens * cols, rng);
    std::vector<float> ys(tokens * rows), ys_dense(tokens * rows);
    layer.forward(MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                  MatrixView<float>(std::span<float>(ys), tokens, rows));
    teacher.forward(MatrixView<const float>(std::span<const float>(xs), tokens, cols),
                    MatrixView<float>(std::span<float>(ys_dense), tokens, rows));
    std::vector<double> tolerance(ys.size());
    for (std::size_t e = 0; e < ys.size(); ++e) {
        const std::size_t t = e / rows, i = e % rows;
        double magnitude = 0.0;
        for (std::size_t j = 0; j < cols; ++j) magnitude += std::fabs(double(w_hat[i * cols + j]) * xs[t * cols + j]);
        tolerance[e] = approximate ? 0.01 * magnitude : 1e-4;
        REQUIRE(std::fabs(ys[e] - ys_dense[e]) <= tolerance[e]);
    }

    const auto dys = testing::random_floats(tokens * rows, rng);
    std::vector<float> dxs(tokens * cols), dxs_dense(tokens * cols);
    layer.backward_input(MatrixView<const float>(std::span<const float>(dys), tokens, rows),
                         MatrixView<float>(std::span<float>(dxs), tokens, cols));
    teacher.backward_input(MatrixView<const float>(std::span<const float>(dys), tokens, rows),
                           MatrixView<float>(std::span<float>(dxs_dense), tokens, cols));
    for (std::size_t e = 0; e < dxs.size(); ++e) REQUIRE(dxs[e] == Approx(dxs_dense[e]).margin(1e-4));
    // The adjoint identity holds for the Boolean layer too, up to the forward product's tolerance.
    double slack = 0.0;
    for (std::size_t e = 0; e < ys.size(); ++e) slack += std::fabs(dys[e]) * tolerance[e];
    REQUIRE(std::fabs(dot(dys, ys) - dot(dxs, xs)) <= slack + 1e-4 * std::fabs(dot(dxs, xs)));
}

TEST_CASE("layers refuse shapes that do not match", "[nn]") {
    const std::vector<float> w(6 * 10, 0.5f);
    const auto layer = MultiBoolLinear<2, 64>::from_dense({std::span<const float>(w), 6, 10});
    std::vector<float> x(3 * 11), y(3 * 6);
    REQUIRE_THROWS_WITH(layer.forward(MatrixView<const float>(std::span<const float>(x), 3, 11),
                                      MatrixView<float>(std::span<float>(y), 3, 6)),
                        Catch::Contains("columns of X has 11 elements, expected 10"));
    std::vector<float> y_short(2 * 6);
    REQUIRE_THROWS_WITH(layer.forward(MatrixView<const float>(std::span<const float>(x).first(30), 3, 10),
                                      MatrixView<float>(std::span<float>(y_short), 2, 6)),
                        Catch::Contains("rows of Y (tokens) has 2 elements, expected 3"));
    REQUIRE_THROWS_AS(MatrixView<const float>(std::span<const float>(x), 4, 10), std::invalid_argument);
    std::vector<float> bad(w);
    bad[13] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(DenseLinear({std::span<const float>(bad), 6, 10}), Catch::Contains("row 1 col 3 is inf"));
}

TEST_CASE("VariableKernelLinear picks K at run time and computes what that MultiBoolLinear computes", "[nn]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    // The scalar backend: this checks the run-time dispatch, so products must be exact.
    using Layer = VariableKernelLinear<32, 4, float, std::uint64_t, ScalarBackend>;
    static_assert(LinearLayer<Layer>);
    static_assert(LinearLayer<VariableKernelLinear<32>>);
    const std::size_t rows = 9;
    const std::size_t cols = 70;
    const auto x = multibool::testing::small_integers(cols, rng);
    const auto check = [&]<std::size_t K>() {
        CAPTURE(K);
        const auto matrix = multibool::testing::random_matrix<BitPlaneMatrix<K, 32>>(rows, cols, rng);
        const Layer layer = Layer::with_kernels(K, [&]<std::size_t k>() {
            if constexpr (k == K) {
                return MultiBoolLinear<k, 32, float, std::uint64_t, ScalarBackend>(matrix);
            } else {
                FAIL("with_kernels built K=" << k << " for a request of " << K);
                return MultiBoolLinear<k, 32, float, std::uint64_t, ScalarBackend>();
            }
        });
        CHECK(layer.kernels() == K);
        CHECK(layer.in_features() == cols);
        CHECK(layer.out_features() == rows);
        CHECK(layer.storage_bytes() == matrix.storage_bytes());
        // Dyadic scales and small-integer inputs: exact against the float64 reference.
        const std::vector<float> dense = matrix.dequantize();
        const auto expected = multibool::testing::dense_gemv(dense, rows, cols, x);
        std::vector<float> y(rows);
        layer.forward(x, y);
        for (std::size_t i = 0; i < rows; ++i) CHECK(double(y[i]) == expected[i]);
    };
    check.template operator()<1>();
    check.template operator()<2>();
    check.template operator()<3>();
    check.template operator()<4>();
    REQUIRE_THROWS_WITH(
        Layer::with_kernels(
            5, []<std::size_t k>() { return MultiBoolLinear<k, 32, float, std::uint64_t, ScalarBackend>(); }),
        Catch::Matchers::Contains("K=5 is outside 1..4"));
}

TEST_CASE("a default-constructed layer is the empty 0 x 0 layer", "[nn]") {
    // Also with a prepacking default backend, whose packed copy of an empty matrix has no tiles.
    const MultiBoolLinear<3, 128> layer;
    REQUIRE(layer.in_features() == 0);
    REQUIRE(layer.out_features() == 0);
    std::vector<float> x, y;
    layer.forward(std::span<const float>(x), std::span<float>(y));
    REQUIRE_THROWS_AS(layer.forward(std::span<const float>(std::vector<float>(1)), std::span<float>(y)),
                      std::invalid_argument);
}
