#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/kernels/popcount_backend.hpp>
#include <multibool/kernels/scalar_backend.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

constexpr std::size_t test_rows = 5;
constexpr std::size_t test_tokens = 3;
// Float accumulation over a few thousand terms: far below the effect of one wrong bit
// (2 alpha |x_j| out of a bound of order n alpha |x|) at the widest shape tested.
constexpr double float_tolerance = 2e-5;

// sum_k sum_g |alpha_k[i,g]| * sum_{j in g} |v_j|: what every float sum of row i is bounded by.
template <class Matrix>
double magnitude_bound(const Matrix& m, std::size_t i, const std::vector<double>& abs_v) {
    double bound = 0.0;
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            double group = 0.0;
            for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) group += abs_v[j];
            bound += std::fabs(double(m.scale(k, i, g))) * group;
        }
    }
    return bound;
}

std::vector<double> absolute(const std::vector<float>& v) {
    std::vector<double> a(v.size());
    std::transform(v.begin(), v.end(), a.begin(), [](float x) { return std::fabs(double(x)); });
    return a;
}

// Plain blocks rather than SECTIONs: Catch2 runs a SECTION met again in a loop only once.
template <class Matrix>
void check_products(std::size_t cols, std::mt19937_64& rng) {
    using Word = typename Matrix::word_type;
    const ScalarBackend backend;
    const auto m = testing::random_matrix<Matrix>(test_rows, cols, rng);
    const auto dense = m.dequantize();

    {
        INFO("float GEMV and GEMM");
        const auto xs = testing::random_floats(test_tokens * cols, rng);
        std::vector<float> ys(test_tokens * test_rows);
        backend.gemm(m, MatrixView<const float>(std::span<const float>(xs), test_tokens, cols),
                     MatrixView<float>(std::span<float>(ys), test_tokens, test_rows));
        for (std::size_t t = 0; t < test_tokens; ++t) {
            const std::vector<float> x(xs.begin() + t * cols, xs.begin() + (t + 1) * cols);
            const auto reference = testing::dense_gemv(dense, test_rows, cols, x);
            std::vector<float> y(test_rows);
            backend.gemv(m, x, y);
            const auto abs_x = absolute(x);
            for (std::size_t i = 0; i < test_rows; ++i) {
                CAPTURE(t, i);
                REQUIRE(std::fabs(y[i] - reference[i]) <= float_tolerance * magnitude_bound(m, i, abs_x));
                REQUIRE(ys[t * test_rows + i] == y[i]);
            }
        }
    }
    {
        INFO("transposed GEMV and GEMM (backward to the input)");
        const auto dys = testing::random_floats(test_tokens * test_rows, rng);
        std::vector<float> dxs(test_tokens * cols);
        backend.gemm_transposed(m, MatrixView<const float>(std::span<const float>(dys), test_tokens, test_rows),
                                MatrixView<float>(std::span<float>(dxs), test_tokens, cols));
        for (std::size_t t = 0; t < test_tokens; ++t) {
            const std::vector<float> dy(dys.begin() + t * test_rows, dys.begin() + (t + 1) * test_rows);
            std::vector<float> dx(cols);
            backend.gemv_transposed(m, dy, dx);
            for (std::size_t j = 0; j < cols; ++j) {
                double reference = 0.0;
                double bound = 0.0;
                for (std::size_t i = 0; i < test_rows; ++i) {
                    reference += double(dense[i * cols + j]) * dy[i];
                    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                        bound += std::fabs(double(m.scale(k, i, j / m.group_size())) * dy[i]);
                    }
                }
                CAPTURE(t, j);
                REQUIRE(std::fabs(dx[j] - reference) <= float_tolerance * bound);
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
        const double scale = max_abs / 127.0f;
        REQUIRE(xq.scale() == Approx(scale).epsilon(1e-7));
        std::vector<float> u(cols);
        for (std::size_t j = 0; j < cols; ++j) {
            u[j] = std::round(x[j] / float(scale));
            REQUIRE(int(xq.value(j)) == int(u[j]));
        }
        std::vector<float> y(test_rows);
        backend.gemv_int8(m, xq, y);
        const auto reference = testing::dense_gemv(dense, test_rows, cols, u);
        const auto abs_u = absolute(u);
        for (std::size_t i = 0; i < test_rows; ++i) {
            CAPTURE(i);
            REQUIRE(std::fabs(y[i] - scale * reference[i]) <= float_tolerance * scale * magnitude_bound(m, i, abs_u));
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
        const std::vector<double> ones(cols, 1.0);
        for (std::size_t i = 0; i < test_rows; ++i) {
            CAPTURE(i);
            REQUIRE(std::fabs(y[i] - reference[i]) <= float_tolerance * magnitude_bound(m, i, ones));
        }
    }
}

}  // namespace

static_assert(PopcountBackend<ScalarBackend, BitPlaneMatrix<3, 128>>);

TEMPLATE_TEST_CASE("scalar products match a dense float64 reference", "[kernels]", std::uint8_t, std::uint16_t,
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

TEST_CASE("int8 quantization keeps sign and range", "[kernels]") {
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

TEST_CASE("products refuse vectors of the wrong length", "[kernels]") {
    const ScalarBackend backend;
    const BitPlaneMatrix<2, 64> m(3, 10);
    std::vector<float> x(9), y(3), dx(10);
    REQUIRE_THROWS_WITH(backend.gemv(m, x, y), "ScalarBackend::gemv: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, std::vector<float>(4), dx),
                        "ScalarBackend::gemv_transposed: dy has 4 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(x), y),
                        Catch::Contains("x has 9 elements"));
}
