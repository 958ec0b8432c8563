#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/backends/highway_backend.hpp>
#include <multibool/backends/product_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

// More tokens than one block of the batched kernels, so that leftover tokens are covered too.
constexpr std::size_t test_tokens = 5;

// Element-wise equality that names the first differing element.
void require_same(const std::vector<float>& expected, const std::vector<float>& found) {
    REQUIRE(expected.size() == found.size());
    for (std::size_t e = 0; e < expected.size(); ++e) {
        if (expected[e] != found[e]) {
            CAPTURE(e, expected[e], found[e]);
            FAIL("results differ");
        }
    }
}

MatrixView<const float> view(const std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return {std::span<const float>(v), rows, cols};
}
MatrixView<float> view(std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return {std::span<float>(v), rows, cols};
}

// Row t of a tokens x cols batch, as a vector.
std::vector<float> token(const std::vector<float>& batch, std::size_t t, std::size_t cols) {
    return {batch.begin() + std::ptrdiff_t(t * cols), batch.begin() + std::ptrdiff_t((t + 1) * cols)};
}

// Every product of `highway` on m, against ScalarBackend. Float activations are small integers or
// normal(0, 1) draws (`integers`); with small integers and the power-of-two scales of
// random_matrix every float sum is exact, so forward products must equal the scalar ones.
// Transposed, int8 and Boolean products are bit-identical to ScalarBackend for any input. A
// batched product must equal its one-token product token by token.
template <class Matrix>
void check_against_scalar(const HighwayBackend& highway, const Matrix& m, bool integers, std::mt19937_64& rng) {
    using Word = typename Matrix::word_type;
    const ScalarBackend scalar;
    const std::size_t rows = m.rows();
    const std::size_t cols = m.cols();
    const auto activations = [&](std::size_t n) {
        return integers ? testing::small_integers(n, rng) : testing::random_floats(n, rng);
    };
    {
        INFO("gemv and gemm");
        const auto xs = activations(test_tokens * cols);
        std::vector<float> expected(test_tokens * rows);
        std::vector<float> found(test_tokens * rows);
        scalar.gemm(m, view(xs, test_tokens, cols), view(expected, test_tokens, rows));
        highway.gemm(m, view(xs, test_tokens, cols), view(found, test_tokens, rows));
        if (integers) {
            require_same(expected, found);
        } else {
            // Summation order differs: within 1e-5 of sum_k sum_j |alpha_k[i,g(j)] x_j|.
            for (std::size_t t = 0; t < test_tokens; ++t) {
                for (std::size_t i = 0; i < rows; ++i) {
                    double bound = 0.0;
                    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                        for (std::size_t j = 0; j < cols; ++j) {
                            bound += std::fabs(double(static_cast<float>(m.scale(k, i, j / m.group_size()))) *
                                               double(xs[t * cols + j]));
                        }
                    }
                    CAPTURE(t, i, expected[t * rows + i], found[t * rows + i]);
                    REQUIRE(std::fabs(double(found[t * rows + i]) - double(expected[t * rows + i])) <= 1e-5 * bound);
                }
            }
        }
        for (std::size_t t = 0; t < test_tokens; ++t) {
            CAPTURE(t);
            std::vector<float> y(rows);
            highway.gemv(m, token(xs, t, cols), y);
            require_same(token(found, t, rows), y);
        }
    }
    {
        INFO("gemv_transposed and gemm_transposed");
        const auto dys = activations(test_tokens * rows);
        std::vector<float> expected(test_tokens * cols);
        std::vector<float> found(test_tokens * cols, -1.0f);
        scalar.gemm_transposed(m, view(dys, test_tokens, rows), view(expected, test_tokens, cols));
        highway.gemm_transposed(m, view(dys, test_tokens, rows), view(found, test_tokens, cols));
        require_same(expected, found);
        for (std::size_t t = 0; t < test_tokens; ++t) {
            CAPTURE(t);
            std::vector<float> dx(cols, -1.0f);
            highway.gemv_transposed(m, token(dys, t, rows), dx);
            require_same(token(expected, t, cols), dx);
        }
    }
    {
        INFO("gemv_int8");
        auto x = testing::random_floats(cols, rng);
        if (cols > 0) x[cols / 2] = -3.5f;  // the extreme value negative some of the time: u = -127 occurs
        const auto xq = Int8Activations<Word>::quantize(x);
        std::vector<float> expected(rows);
        std::vector<float> found(rows);
        scalar.gemv_int8(m, xq, expected);
        highway.gemv_int8(m, xq, found);
        require_same(expected, found);
    }
    {
        INFO("gemv_boolean");
        const auto xb = BooleanActivations<Word>::binarize(testing::random_floats(cols, rng));
        std::vector<float> expected(rows);
        std::vector<float> found(rows);
        scalar.gemv_boolean(m, xb, expected);
        highway.gemv_boolean(m, xb, found);
        require_same(expected, found);
    }
}

}  // namespace

static_assert(ProductBackend<HighwayBackend, BitPlaneMatrix<3, 128>>);
static_assert(ProductBackend<HighwayBackend, BitPlaneMatrix<8, per_row, half, std::uint8_t>>);

TEMPLATE_TEST_CASE("highway products equal the scalar backend's", "[kernels][highway]", std::uint8_t, std::uint16_t,
                   std::uint32_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed, HighwayBackend::target());
    std::mt19937_64 rng(seed);
    const HighwayBackend highway;
    testing::for_each_k_and_group<TestType>([&]<class Matrix>() {
        for (std::size_t rows : {1u, 5u, 17u}) {
            for (std::size_t cols : {1u, 7u, 63u, 65u, 100u, 172u, 300u}) {
                CAPTURE(Matrix::kernels, Matrix::group_size_parameter, rows, cols);
                check_against_scalar(highway, testing::random_matrix<Matrix>(rows, cols, rng), true, rng);
            }
        }
    });
}

TEST_CASE("highway products on normal activations: forward within tolerance, the rest exact", "[kernels][highway]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const HighwayBackend highway;
    for (std::size_t cols : {172u, 1000u}) {
        CAPTURE(cols);
        check_against_scalar(highway, testing::random_matrix<BitPlaneMatrix<3, 128>>(17, cols, rng), false, rng);
        check_against_scalar(highway, testing::random_matrix<BitPlaneMatrix<2, per_row, float, std::uint16_t>>(9, cols, rng),
                             false, rng);
    }
}

TEST_CASE("highway products with 16-bit and double scales", "[kernels][highway]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const HighwayBackend highway;
    check_against_scalar(highway, testing::random_matrix<BitPlaneMatrix<3, 128, half, std::uint64_t>>(5, 300, rng),
                         true, rng);
    check_against_scalar(highway, testing::random_matrix<BitPlaneMatrix<2, 64, bfloat16, std::uint32_t>>(5, 172, rng),
                         true, rng);
    check_against_scalar(highway, testing::random_matrix<BitPlaneMatrix<4, 32, double, std::uint8_t>>(5, 100, rng),
                         true, rng);
}

TEST_CASE("highway products on empty shapes", "[kernels][highway]") {
    std::mt19937_64 rng(fresh_seed());
    const HighwayBackend highway;
    check_against_scalar(highway, BitPlaneMatrix<2, 64>(0, 70), true, rng);
    check_against_scalar(highway, BitPlaneMatrix<2, 64>(3, 0), true, rng);
    check_against_scalar(highway, BitPlaneMatrix<2, per_row, float, std::uint8_t>(0, 0), true, rng);
}

TEST_CASE("highway results do not depend on the thread count", "[kernels][highway]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    constexpr std::size_t rows = 300;
    constexpr std::size_t cols = 1000;
    using Matrix = BitPlaneMatrix<3, 128>;
    const auto m = testing::random_matrix<Matrix>(rows, cols, rng);
    const auto xs = testing::random_floats(test_tokens * cols, rng);
    const auto dys = testing::random_floats(test_tokens * rows, rng);
    const auto xq = Int8Activations<std::uint64_t>::quantize(token(xs, 0, cols));
    const auto xb = BooleanActivations<std::uint64_t>::binarize(token(xs, 1, cols));

    // Every product's outputs, one after another.
    const auto all_products = [&](std::size_t threads) {
        const HighwayBackend backend(threads);
        REQUIRE(backend.threads() == threads);
        std::vector<float> out;
        const auto append = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
        std::vector<float> y(rows);
        std::vector<float> dx(cols);
        std::vector<float> ys(test_tokens * rows);
        std::vector<float> dxs(test_tokens * cols);
        backend.gemv(m, token(xs, 0, cols), y);
        append(y);
        backend.gemm(m, view(xs, test_tokens, cols), view(ys, test_tokens, rows));
        append(ys);
        backend.gemv_transposed(m, token(dys, 0, rows), dx);
        append(dx);
        backend.gemm_transposed(m, view(dys, test_tokens, rows), view(dxs, test_tokens, cols));
        append(dxs);
        backend.gemv_int8(m, xq, y);
        append(y);
        backend.gemv_boolean(m, xb, y);
        append(y);
        return out;
    };
    const auto one_thread = all_products(1);
    for (std::size_t threads : {2u, 3u}) {
        CAPTURE(threads);
        require_same(one_thread, all_products(threads));
    }
}

TEST_CASE("highway products refuse vectors of the wrong length", "[kernels][highway]") {
    const HighwayBackend backend;
    const BitPlaneMatrix<2, 64> m(3, 10);
    std::vector<float> x(9), y(3), dx(10), xs(20), ys(6), wide(30), dys(6), dxs(20);
    REQUIRE_THROWS_WITH(backend.gemv(m, x, y), "HighwayBackend::gemv: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv(m, dx, x), "HighwayBackend::gemv: y has 9 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(wide, 2, 15), view(ys, 2, 3)),
                        "HighwayBackend::gemm: columns of X has 15 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(xs, 2, 10), view(ys, 3, 2)),
                        "HighwayBackend::gemm: columns of Y has 2 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(wide, 3, 10), view(ys, 2, 3)),
                        "HighwayBackend::gemm: rows of Y (tokens) has 2 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, std::vector<float>(4), dx),
                        "HighwayBackend::gemv_transposed: dy has 4 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, y, x),
                        "HighwayBackend::gemv_transposed: dx has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemm_transposed(m, view(dys, 3, 2), view(wide, 3, 10)), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm_transposed(m, view(dys, 2, 3), view(wide, 2, 15)), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm_transposed(m, view(dys, 2, 3), view(wide, 3, 10)), std::invalid_argument);
    REQUIRE_THROWS_WITH(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(x), y),
                        "HighwayBackend::gemv_int8: x has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(dx), x), std::invalid_argument);
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(x), y),
                        "HighwayBackend::gemv_boolean: x has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(dx), x),
                      std::invalid_argument);
}
