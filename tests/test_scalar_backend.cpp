#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <multibool/backends/product_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

constexpr std::size_t test_rows = 5;
constexpr std::size_t test_tokens = 3;

// Scales are signed powers of two and activations small integers (or int8 codes), so every
// product is exact in float: results must equal the float64 reference, and a single wrong bit
// anywhere shows. Plain blocks rather than SECTIONs: Catch2 runs a SECTION met again in a loop once.
template <class Matrix>
void check_products(std::size_t cols, std::mt19937_64& rng) {
    using Word = typename Matrix::word_type;
    const ScalarBackend backend;
    const auto m = testing::random_matrix<Matrix>(test_rows, cols, rng);
    const auto dense = m.dequantize();

    {
        INFO("float GEMV and GEMM");
        const auto xs = testing::small_integers(test_tokens * cols, rng);
        std::vector<float> ys(test_tokens * test_rows);
        backend.gemm(m, MatrixView<const float>(std::span<const float>(xs), test_tokens, cols),
                     MatrixView<float>(std::span<float>(ys), test_tokens, test_rows));
        for (std::size_t t = 0; t < test_tokens; ++t) {
            const std::vector<float> x(xs.begin() + t * cols, xs.begin() + (t + 1) * cols);
            const auto reference = testing::dense_gemv(dense, test_rows, cols, x);
            std::vector<float> y(test_rows);
            backend.gemv(m, x, y);
            for (std::size_t i = 0; i < test_rows; ++i) {
                CAPTURE(t, i);
                REQUIRE(double(y[i]) == reference[i]);
                REQUIRE(ys[t * test_rows + i] == y[i]);
            }
        }
    }
    {
        INFO("transposed GEMV and GEMM (backward to the input)");
        const auto dys = testing::small_integers(test_tokens * test_rows, rng);
        std::vector<float> dxs(test_tokens * cols);
        backend.gemm_transposed(m, MatrixView<const float>(std::span<const float>(dys), test_tokens, test_rows),
                                MatrixView<float>(std::span<float>(dxs), test_tokens, cols));
        for (std::size_t t = 0; t < test_tokens; ++t) {
            const std::vector<float> dy(dys.begin() + t * test_rows, dys.begin() + (t + 1) * test_rows);
            std::vector<float> dx(cols);
            backend.gemv_transposed(m, dy, dx);
            for (std::size_t j = 0; j < cols; ++j) {
                double reference = 0.0;
                for (std::size_t i = 0; i < test_rows; ++i) reference += double(dense[i * cols + j]) * dy[i];
                CAPTURE(t, j);
                REQUIRE(double(dx[j]) == reference);
                REQUIRE(dxs[t * cols + j] == dx[j]);
            }
        }
    }
    {
        INFO("int8 bit-serial GEMV");
        auto x = testing::random_floats(cols, rng);
        x[cols / 2] = -3.5f;  // make sure the extreme value is negative some of the time
        const auto xq = Int8Activations<Word>::quantize(x);
        // Independent quantization: scale = max|x| / 127, u = round(x / scale).
        float max_abs = 0.0f;
        for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
        const float scale = max_abs / 127.0f;
        REQUIRE(xq.scale() == scale);
        std::vector<float> u(cols);
        for (std::size_t j = 0; j < cols; ++j) {
            u[j] = std::round(x[j] / scale);
            REQUIRE(int(xq.value(j)) == int(u[j]));
        }
        std::vector<float> y(test_rows);
        backend.gemv_int8(m, xq, y);
        const auto reference = testing::dense_gemv(dense, test_rows, cols, u);
        for (std::size_t i = 0; i < test_rows; ++i) {
            CAPTURE(i);
            // The integer sum is exact; the one rounding is the final multiply by the scale.
            REQUIRE(y[i] == static_cast<float>(reference[i] * double(scale)));
        }
    }
    {
        INFO("XNOR+popcount GEMV on Boolean activations");
        std::vector<float> x(cols);
        std::bernoulli_distribution coin(0.5);
        for (auto& v : x) v = coin(rng) ? 1.0f : -1.0f;
        const auto xb = BooleanActivations<Word>::binarize(x);
        std::vector<float> y(test_rows);
        backend.gemv_boolean(m, xb, y);
        const auto reference = testing::dense_gemv(dense, test_rows, cols, x);
        for (std::size_t i = 0; i < test_rows; ++i) {
            CAPTURE(i);
            REQUIRE(double(y[i]) == reference[i]);
        }
    }
}

}  // namespace

static_assert(ProductBackend<ScalarBackend, BitPlaneMatrix<3, 128>>);

TEMPLATE_TEST_CASE("scalar products match a dense float64 reference", "[backends]", std::uint8_t, std::uint16_t,
                   std::uint32_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    testing::for_each_k_and_group<TestType>([&]<class Matrix>() {
        for (std::size_t cols : {172u, 100u, 1u, 4097u}) {
            CAPTURE(Matrix::kernels, Matrix::group_size_parameter, cols);
            check_products<Matrix>(cols, rng);
        }
    });
}

TEST_CASE("int8 quantization keeps sign and range", "[backends]") {
    const std::vector<float> x{0.0f, -1.0f, 0.5f, 1.0f, -0.25f};
    const auto q = Int8Activations<std::uint8_t>::quantize(x);
    REQUIRE(q.scale() == Approx(1.0f / 127.0f));
    REQUIRE(std::vector<int>{q.value(0), q.value(1), q.value(2), q.value(3), q.value(4)} ==
            std::vector<int>{0, -127, 64, 127, -32});
    const auto zeros = Int8Activations<std::uint8_t>::quantize(std::vector<float>(9, 0.0f));
    REQUIRE(zeros.scale() == 0.0f);
    REQUIRE(zeros.value(8) == 0);
    const std::vector<float> bad{1.0f, std::nanf("")};
    REQUIRE_THROWS_WITH(Int8Activations<std::uint8_t>::quantize(bad), Catch::Contains("element 1"));
    REQUIRE(BooleanActivations<std::uint16_t>::binarize(std::vector<float>{0.0f, -0.0f, -1e-9f}).sign(2) == -1);
    REQUIRE(BooleanActivations<std::uint16_t>::binarize(std::vector<float>{0.0f}).sign(0) == 1);
}

TEST_CASE("products refuse vectors of the wrong length", "[backends]") {
    const ScalarBackend backend;
    const BitPlaneMatrix<2, 64> m(3, 10);
    std::vector<float> x(9), y(3), dx(10);
    REQUIRE_THROWS_WITH(backend.gemv(m, x, y), "scalar backend gemv: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, std::vector<float>(4), dx),
                        "scalar backend gemv_transposed: dy has 4 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(x), y),
                        Catch::Contains("x has 9 elements"));
}
