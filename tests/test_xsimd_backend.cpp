#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/backends/product_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/backends/xsimd_backend.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

// Five tokens: one block of four sharing each decoded chunk, and one token on its own.
constexpr std::size_t test_tokens = 5;

MatrixView<const float> view(const std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return MatrixView<const float>(std::span<const float>(v), rows, cols);
}
MatrixView<float> view(std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return MatrixView<float>(std::span<float>(v), rows, cols);
}

// What one backend's six products give on one matrix and one set of inputs.
struct Outputs {
    std::vector<float> gemv, gemm, gemv_transposed, gemm_transposed, gemv_int8, gemv_boolean;
};

struct Inputs {
    std::vector<float> x, xs, dy, dys, x_int8, x_boolean;
};

template <class Matrix>
Inputs random_inputs(const Matrix& m, std::mt19937_64& rng, bool small_integers) {
    const auto activations = [&](std::size_t n) {
        return small_integers ? testing::small_integers(n, rng) : testing::random_floats(n, rng);
    };
    Inputs in{activations(m.cols()),
              activations(test_tokens * m.cols()),
              activations(m.rows()),
              activations(test_tokens * m.rows()),
              testing::random_floats(m.cols(), rng),
              std::vector<float>(m.cols())};
    std::bernoulli_distribution coin(0.5);
    for (auto& v : in.x_boolean) v = coin(rng) ? 1.0f : -1.0f;
    return in;
}

template <class Backend, class Matrix>
Outputs run_products(const Backend& backend, const Matrix& m, const Inputs& in) {
    using Word = typename Matrix::word_type;
    const std::size_t rows = m.rows();
    const std::size_t cols = m.cols();
    Outputs out{std::vector<float>(rows), std::vector<float>(test_tokens * rows),
                std::vector<float>(cols), std::vector<float>(test_tokens * cols),
                std::vector<float>(rows), std::vector<float>(rows)};
    backend.gemv(m, in.x, out.gemv);
    backend.gemm(m, view(in.xs, test_tokens, cols), view(out.gemm, test_tokens, rows));
    backend.gemv_transposed(m, in.dy, out.gemv_transposed);
    backend.gemm_transposed(m, view(in.dys, test_tokens, rows), view(out.gemm_transposed, test_tokens, cols));
    backend.gemv_int8(m, Int8Activations<Word>::quantize(in.x_int8), out.gemv_int8);
    backend.gemv_boolean(m, BooleanActivations<Word>::binarize(in.x_boolean), out.gemv_boolean);
    return out;
}

// Bound on the rounding error of row i of W_hat x: a small multiple of sum_k sum_j |alpha_k[i,g(j)] x_j|.
template <class Matrix>
double magnitude(const Matrix& m, std::size_t i, std::span<const float> x) {
    double sum = 0.0;
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            sum += std::fabs(static_cast<double>(m.scale(k, i, j / m.group_size())) * double(x[j]));
        }
    }
    return sum;
}

// The xsimd backend against the scalar reference on one matrix. With small-integer activations
// and power-of-two scales every float product is exact, so all outputs must be equal; with normal
// floats the forward products may round differently (another summation order), within
// relative_tolerance of the magnitude of the terms. The transposed, int8 and Boolean products
// follow the scalar backend's roundings and must be equal in both cases.
template <class Matrix>
void check_against_scalar(const Matrix& m, const XsimdBackend& backend, std::mt19937_64& rng) {
    constexpr double relative_tolerance = 1e-5;
    const ScalarBackend scalar;
    for (const bool small_integers : {true, false}) {
        CAPTURE(small_integers);
        const auto in = random_inputs(m, rng, small_integers);
        const auto expected = run_products(scalar, m, in);
        const auto found = run_products(backend, m, in);
        REQUIRE(found.gemv_transposed == expected.gemv_transposed);
        REQUIRE(found.gemm_transposed == expected.gemm_transposed);
        REQUIRE(found.gemv_int8 == expected.gemv_int8);
        REQUIRE(found.gemv_boolean == expected.gemv_boolean);
        if (small_integers) {
            REQUIRE(found.gemv == expected.gemv);
            REQUIRE(found.gemm == expected.gemm);
            continue;
        }
        for (std::size_t t = 0; t <= test_tokens; ++t) {
            // t == test_tokens stands for the GEMV.
            const bool is_gemv = t == test_tokens;
            const std::span<const float> x =
                is_gemv ? std::span<const float>(in.x) : std::span<const float>(in.xs).subspan(t * m.cols(), m.cols());
            for (std::size_t i = 0; i < m.rows(); ++i) {
                const std::size_t e = is_gemv ? i : t * m.rows() + i;
                const float y = is_gemv ? found.gemv[e] : found.gemm[e];
                const float reference = is_gemv ? expected.gemv[e] : expected.gemm[e];
                CAPTURE(t, i, y, reference);
                REQUIRE(std::fabs(double(y) - double(reference)) <= relative_tolerance * magnitude(m, i, x));
            }
        }
    }
}

template <class Matrix>
void check_shapes(const XsimdBackend& backend, std::mt19937_64& rng) {
    for (std::size_t rows : {1u, 5u, 17u}) {
        for (std::size_t cols : {1u, 7u, 63u, 65u, 100u, 172u, 300u}) {
            CAPTURE(Matrix::kernels, Matrix::group_size_parameter, rows, cols);
            check_against_scalar(testing::random_matrix<Matrix>(rows, cols, rng), backend, rng);
        }
    }
}

}  // namespace

static_assert(ProductBackend<XsimdBackend, BitPlaneMatrix<3, 128>>);
static_assert(ProductBackend<XsimdBackend, BitPlaneMatrix<1, per_row, half, std::uint8_t>>);

TEMPLATE_TEST_CASE("xsimd products equal the scalar backend's", "[kernels][xsimd]", std::uint8_t, std::uint16_t,
                   std::uint32_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const XsimdBackend backend;
    testing::for_each_k_and_group<TestType>([&]<class Matrix>() { check_shapes<Matrix>(backend, rng); });
}

TEST_CASE("xsimd products handle group sizes that are not a multiple of the lanes, and 16-bit scales",
          "[kernels][xsimd]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const XsimdBackend backend;
    check_shapes<BitPlaneMatrix<2, 100, float, std::uint64_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<3, 24, float, std::uint8_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<1, 7, float, std::uint32_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<8, 40, float, std::uint16_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<3, 128, half, std::uint64_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<2, 64, bfloat16, std::uint16_t>>(backend, rng);
    check_shapes<BitPlaneMatrix<4, per_row, double, std::uint32_t>>(backend, rng);
}

TEST_CASE("xsimd products of empty matrices", "[kernels][xsimd]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const XsimdBackend backend(2);
    for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{0, 10}, {3, 0}, {0, 0}}) {
        CAPTURE(rows, cols);
        check_against_scalar(testing::random_matrix<BitPlaneMatrix<2, 64>>(rows, cols, rng), backend, rng);
    }
}

TEST_CASE("xsimd products do not depend on the thread count", "[kernels][xsimd]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const auto check = [&]<class Matrix>() {
        CAPTURE(Matrix::kernels, Matrix::group_size_parameter);
        const auto m = testing::random_matrix<Matrix>(300, 1000, rng);
        const auto in = random_inputs(m, rng, false);
        const auto one = run_products(XsimdBackend(1), m, in);
        REQUIRE(XsimdBackend(1).threads() == 1);
        for (std::size_t threads : {2u, 3u}) {
            CAPTURE(threads);
            const XsimdBackend backend(threads);
            REQUIRE(backend.threads() == threads);
            const auto many = run_products(backend, m, in);
            REQUIRE(many.gemv == one.gemv);
            REQUIRE(many.gemm == one.gemm);
            REQUIRE(many.gemv_transposed == one.gemv_transposed);
            REQUIRE(many.gemm_transposed == one.gemm_transposed);
            REQUIRE(many.gemv_int8 == one.gemv_int8);
            REQUIRE(many.gemv_boolean == one.gemv_boolean);
        }
    };
    check.operator()<BitPlaneMatrix<3, 128, float, std::uint64_t>>();
    check.operator()<BitPlaneMatrix<2, 100, half, std::uint16_t>>();
}

TEST_CASE("xsimd products refuse vectors of the wrong length", "[kernels][xsimd]") {
    const XsimdBackend backend;
    const BitPlaneMatrix<2, 64> m(3, 10);
    std::vector<float> x(9), y(3), dx(10), y4(4), xs(2 * 10), ys(2 * 3);
    REQUIRE_THROWS_WITH(backend.gemv(m, x, y), "XsimdBackend::gemv: x has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemv(m, dx, y4), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm(m, view(xs, 2, 10), view(ys, 3, 2)), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm(m, view(xs, 2, 10), view(x, 3, 3)), std::invalid_argument);
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, std::vector<float>(4), dx),
                        "XsimdBackend::gemv_transposed: dy has 4 elements, expected 3");
    REQUIRE_THROWS_AS(backend.gemv_transposed(m, y, x), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm_transposed(m, view(ys, 2, 3), view(x, 1, 9)), std::invalid_argument);
    REQUIRE_THROWS_AS(backend.gemm_transposed(m, view(ys, 2, 3), view(dx, 1, 10)), std::invalid_argument);
    REQUIRE_THROWS_WITH(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(x), y),
                        "XsimdBackend::gemv_int8: x has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(dx), x), std::invalid_argument);
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(x), y),
                        "XsimdBackend::gemv_boolean: x has 9 elements, expected 10");
    REQUIRE_THROWS_AS(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(dx), x),
                      std::invalid_argument);
}
