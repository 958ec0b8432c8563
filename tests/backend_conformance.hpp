#pragma once
// The conformance suite every ProductBackend passes, against ScalarBackend, the readable
// reference (itself checked against dense float products in test_scalar_backend.cpp). A test file
// defines `using conforming_backends = std::tuple<...>;` with the backends its build compiles and
// includes this header: a new backend is one entry in that list.
//
// What a backend promises:
// - the transposed, int8 and Boolean products equal the reference bit for bit, for any input (the
//   transposed ones where multiply-add is fused, as in these -march=native builds);
// - the forward float products equal it bit for bit when every sum is exact (small-integer
//   activations and the power-of-two scales of testing::random_matrix), and otherwise lie within
//   1e-5 of sum_k sum_j |alpha_k[i,g(j)] x_j| of it (another summation order);
// - a batched product equals its one-token product token by token, bit for bit;
// - results do not depend on the thread count;
// - shapes are checked, with the backend's name and the product in the message.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <multibool/backends/boolean_activations.hpp>
#include <multibool/backends/int8_activations.hpp>
#include <multibool/backends/product_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>

#include "test_support.hpp"

namespace multibool::testing::conformance {

// More tokens than one block of any batched kernel (4), so that leftover tokens are covered too.
inline constexpr std::size_t tokens = 5;

// What one backend's six products give on one matrix and one set of inputs.
struct Outputs {
    std::vector<float> gemv, gemm, gemv_transposed, gemm_transposed, gemv_int8, gemv_boolean;
    // The GEMM again, one token at a time through gemv and gemv_transposed.
    std::vector<float> gemm_by_token, gemm_transposed_by_token;
};

struct Inputs {
    std::vector<float> x, xs, dy, dys, x_int8, x_boolean;
};

template <class Matrix>
Inputs random_inputs(const Matrix& m, std::mt19937_64& rng, bool small_integers) {
    const auto activations = [&](std::size_t n) {
        return small_integers ? testing::small_integers(n, rng) : testing::random_floats(n, rng);
    };
    Inputs in{activations(m.cols()),          activations(tokens * m.cols()),        activations(m.rows()),
              activations(tokens * m.rows()), testing::random_floats(m.cols(), rng), std::vector<float>(m.cols())};
    // The extreme value negative some of the time, so that u = -127 occurs.
    if (m.cols() > 0) in.x_int8[m.cols() / 2] = -3.5f;
    std::bernoulli_distribution coin(0.5);
    for (auto& v : in.x_boolean) v = coin(rng) ? 1.0f : -1.0f;
    return in;
}

template <class Backend, class Matrix>
Outputs run_products(const Backend& backend, const Matrix& m, const Inputs& in) {
    using Word = typename Matrix::word_type;
    const std::size_t rows = m.rows();
    const std::size_t cols = m.cols();
    Outputs out{std::vector<float>(rows),          std::vector<float>(tokens * rows),
                std::vector<float>(cols, -1.0f),   std::vector<float>(tokens * cols, -1.0f),
                std::vector<float>(rows),          std::vector<float>(rows),
                std::vector<float>(tokens * rows), std::vector<float>(tokens * cols, -1.0f)};
    backend.gemv(m, in.x, out.gemv);
    backend.gemm(m, view(in.xs, tokens, cols), view(out.gemm, tokens, rows));
    backend.gemv_transposed(m, in.dy, out.gemv_transposed);
    backend.gemm_transposed(m, view(in.dys, tokens, rows), view(out.gemm_transposed, tokens, cols));
    backend.gemv_int8(m, Int8Activations<Word>::quantize(in.x_int8), out.gemv_int8);
    backend.gemv_boolean(m, BooleanActivations<Word>::binarize(in.x_boolean), out.gemv_boolean);
    for (std::size_t t = 0; t < tokens; ++t) {
        backend.gemv(m, std::span<const float>(in.xs).subspan(t * cols, cols),
                     std::span<float>(out.gemm_by_token).subspan(t * rows, rows));
        backend.gemv_transposed(m, std::span<const float>(in.dys).subspan(t * rows, rows),
                                std::span<float>(out.gemm_transposed_by_token).subspan(t * cols, cols));
    }
    return out;
}

// sum_k sum_j |alpha_k[i,g(j)] x_j|: what a reordered sum of row i of W_hat x may round by, relatively.
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

// Element-wise equality that names the first differing element.
inline void require_same(const char* product, const std::vector<float>& expected, const std::vector<float>& found) {
    CAPTURE(product);
    REQUIRE(expected.size() == found.size());
    for (std::size_t e = 0; e < expected.size(); ++e) {
        if (expected[e] != found[e] && !(std::isnan(expected[e]) && std::isnan(found[e]))) {
            CAPTURE(e, expected[e], found[e]);
            FAIL("results differ");
        }
    }
}

// Every product's outputs equal, bit for bit.
inline void require_same_outputs(const Outputs& expected, const Outputs& found) {
    require_same("gemv", expected.gemv, found.gemv);
    require_same("gemm", expected.gemm, found.gemm);
    require_same("gemv_transposed", expected.gemv_transposed, found.gemv_transposed);
    require_same("gemm_transposed", expected.gemm_transposed, found.gemm_transposed);
    require_same("gemv_int8", expected.gemv_int8, found.gemv_int8);
    require_same("gemv_boolean", expected.gemv_boolean, found.gemv_boolean);
}

// sum_i |dy_i| sum_k |alpha_k[i,g(j)]|: the size of dx_j's terms, what rounding error scales with.
template <class Matrix>
double transposed_magnitude(const Matrix& m, std::size_t j, std::span<const float> dy) {
    double sum = 0;
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            sum += std::fabs(static_cast<double>(m.scale(k, i, j / m.group_size())) * double(dy[i]));
        }
    }
    return sum;
}

// Whether the backend's multiply-add is fused like the reference's std::fma: the transposed
// products then equal it bit for bit, else (two roundings) they are checked within a bound.
enum class MultiplyAdd { fused, rounded_twice };

template <class Backend, class Matrix>
void check_against_reference(const Backend& backend, const Matrix& m, std::mt19937_64& rng,
                             MultiplyAdd multiply_add = MultiplyAdd::fused) {
    constexpr double relative_tolerance = 1e-5;
    const ScalarBackend reference;
    for (const bool small_integers : {true, false}) {
        CAPTURE(small_integers);
        const auto in = random_inputs(m, rng, small_integers);
        const auto expected = run_products(reference, m, in);
        const auto found = run_products(backend, m, in);
        if (multiply_add == MultiplyAdd::fused || small_integers) {
            require_same("gemv_transposed", expected.gemv_transposed, found.gemv_transposed);
            require_same("gemm_transposed", expected.gemm_transposed, found.gemm_transposed);
        } else {
            for (std::size_t t = 0; t <= tokens; ++t) {
                const bool is_gemv = t == tokens;  // t == tokens stands for the GEMV
                const std::span<const float> dy = is_gemv
                                                      ? std::span<const float>(in.dy)
                                                      : std::span<const float>(in.dys).subspan(t * m.rows(), m.rows());
                for (std::size_t j = 0; j < m.cols(); ++j) {
                    const std::size_t e = is_gemv ? j : t * m.cols() + j;
                    const float dx = is_gemv ? found.gemv_transposed[e] : found.gemm_transposed[e];
                    const float dx_reference = is_gemv ? expected.gemv_transposed[e] : expected.gemm_transposed[e];
                    CAPTURE(t, j, dx, dx_reference);
                    REQUIRE(std::fabs(double(dx) - double(dx_reference)) <=
                            relative_tolerance * transposed_magnitude(m, j, dy));
                }
            }
        }
        require_same("gemv_int8", expected.gemv_int8, found.gemv_int8);
        require_same("gemv_boolean", expected.gemv_boolean, found.gemv_boolean);
        require_same("gemm against gemv per token", found.gemm, found.gemm_by_token);
        require_same("gemm_transposed against gemv_transposed per token", found.gemm_transposed,
                     found.gemm_transposed_by_token);
        if (small_integers) {
            require_same("gemv", expected.gemv, found.gemv);
            require_same("gemm", expected.gemm, found.gemm);
            continue;
        }
        for (std::size_t t = 0; t <= tokens; ++t) {
            // t == tokens stands for the GEMV.
            const bool is_gemv = t == tokens;
            const std::span<const float> x =
                is_gemv ? std::span<const float>(in.x) : std::span<const float>(in.xs).subspan(t * m.cols(), m.cols());
            for (std::size_t i = 0; i < m.rows(); ++i) {
                const std::size_t e = is_gemv ? i : t * m.rows() + i;
                const float y = is_gemv ? found.gemv[e] : found.gemm[e];
                const float y_reference = is_gemv ? expected.gemv[e] : expected.gemm[e];
                CAPTURE(t, i, y, y_reference);
                REQUIRE(std::fabs(double(y) - double(y_reference)) <= relative_tolerance * magnitude(m, i, x));
            }
        }
    }
}

// Ragged shapes: rows around one thread's share, columns around word and group edges.
template <class Backend, class Matrix>
void check_shapes(const Backend& backend, std::mt19937_64& rng, MultiplyAdd multiply_add = MultiplyAdd::fused) {
    for (std::size_t rows : {1u, 5u, 17u}) {
        for (std::size_t cols : {1u, 7u, 63u, 65u, 100u, 172u, 300u}) {
            CAPTURE(Matrix::kernels, Matrix::group_size_parameter, rows, cols);
            check_against_reference(backend, testing::random_matrix<Matrix>(rows, cols, rng), rng, multiply_add);
        }
    }
}

}  // namespace multibool::testing::conformance

TEMPLATE_LIST_TEST_CASE("conformance: every product against the scalar reference, every K, G and word width",
                        "[backends][conformance]", conforming_backends) {
    using namespace multibool;
    const auto seed = testing::fresh_seed();
    CAPTURE(seed, std::string(TestType::name));
    std::mt19937_64 rng(seed);
    const TestType backend(2);
    const auto for_word = [&]<class Word>() {
        testing::for_each_k_and_group<Word>(
            [&]<class Matrix>() { testing::conformance::check_shapes<TestType, Matrix>(backend, rng); });
    };
    for_word.template operator()<std::uint8_t>();
    for_word.template operator()<std::uint16_t>();
    for_word.template operator()<std::uint32_t>();
    for_word.template operator()<std::uint64_t>();
    // Group sizes that are not a multiple of any word width, and K = 8.
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<3, 24, float, std::uint8_t>>(backend, rng);
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<1, 7, float, std::uint32_t>>(backend, rng);
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<8, 40, float, std::uint16_t>>(backend, rng);
}

TEMPLATE_LIST_TEST_CASE("conformance: 16-bit and double scales", "[backends][conformance]", conforming_backends) {
    using namespace multibool;
    const auto seed = testing::fresh_seed();
    CAPTURE(seed, std::string(TestType::name));
    std::mt19937_64 rng(seed);
    const TestType backend(2);
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<3, 128, half, std::uint64_t>>(backend, rng);
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<2, 64, bfloat16, std::uint16_t>>(backend, rng);
    testing::conformance::check_shapes<TestType, BitPlaneMatrix<4, per_row, double, std::uint32_t>>(backend, rng);
    // Longer rows than check_shapes takes, in several groups.
    for (std::size_t cols : {1000u, 4096u}) {
        CAPTURE(cols);
        testing::conformance::check_against_reference(
            backend, testing::random_matrix<BitPlaneMatrix<3, 128, half, std::uint64_t>>(17, cols, rng), rng);
    }
}

TEMPLATE_LIST_TEST_CASE("conformance: empty matrices", "[backends][conformance]", conforming_backends) {
    using namespace multibool;
    const auto seed = testing::fresh_seed();
    CAPTURE(seed, std::string(TestType::name));
    std::mt19937_64 rng(seed);
    const TestType backend(2);
    // (Rows without columns are refused by the matrix itself: nothing would bound them in a file.)
    for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{0, 70}, {0, 0}}) {
        CAPTURE(rows, cols);
        testing::conformance::check_against_reference(backend, BitPlaneMatrix<2, 64>(rows, cols), rng);
        testing::conformance::check_against_reference(backend,
                                                      BitPlaneMatrix<2, per_row, float, std::uint8_t>(rows, cols), rng);
    }
}

TEMPLATE_LIST_TEST_CASE("conformance: results do not depend on the thread count", "[backends][conformance]",
                        conforming_backends) {
    using namespace multibool;
    const auto seed = testing::fresh_seed();
    CAPTURE(seed, std::string(TestType::name));
    std::mt19937_64 rng(seed);
    const auto check = [&]<class Matrix>() {
        CAPTURE(Matrix::kernels, Matrix::group_size_parameter);
        const auto m = testing::random_matrix<Matrix>(300, 1000, rng);
        const auto in = testing::conformance::random_inputs(m, rng, false);
        const auto one = testing::conformance::run_products(TestType(1), m, in);
        for (std::size_t threads : {2u, 3u}) {
            CAPTURE(threads);
            const auto many = testing::conformance::run_products(TestType(threads), m, in);
            testing::conformance::require_same_outputs(one, many);
        }
    };
    check.template operator()<BitPlaneMatrix<3, 128>>();
    check.template operator()<BitPlaneMatrix<2, 100, half, std::uint16_t>>();
}

TEMPLATE_LIST_TEST_CASE("conformance: products refuse vectors of the wrong length", "[backends][conformance]",
                        conforming_backends) {
    using namespace multibool;
    using testing::view;
    const TestType backend;
    const std::string prefix = std::string(TestType::name) + " backend ";
    const BitPlaneMatrix<2, 64> m(3, 10);
    std::vector<float> x(9), y(3), dx(10), xs(20), ys(6), wide(30), dys(6);
    REQUIRE_THROWS_WITH(backend.gemv(m, x, y), prefix + "gemv: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv(m, dx, x), prefix + "gemv: y has 9 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(wide, 2, 15), view(ys, 2, 3)),
                        prefix + "gemm: columns of X has 15 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(xs, 2, 10), view(ys, 3, 2)),
                        prefix + "gemm: columns of Y has 2 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemm(m, view(wide, 3, 10), view(ys, 2, 3)),
                        prefix + "gemm: rows of Y (tokens) has 2 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, std::vector<float>(4), dx),
                        prefix + "gemv_transposed: dy has 4 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_transposed(m, y, x), prefix + "gemv_transposed: dx has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemm_transposed(m, view(dys, 3, 2), view(wide, 3, 10)),
                        prefix + "gemm_transposed: columns of dY has 2 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemm_transposed(m, view(dys, 2, 3), view(wide, 2, 15)),
                        prefix + "gemm_transposed: columns of dX has 15 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemm_transposed(m, view(dys, 2, 3), view(wide, 3, 10)),
                        prefix + "gemm_transposed: rows of dX (tokens) has 3 elements, expected 2");
    REQUIRE_THROWS_WITH(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(x), y),
                        prefix + "gemv_int8: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv_int8(m, Int8Activations<std::uint64_t>::quantize(dx), x),
                        prefix + "gemv_int8: y has 9 elements, expected 3");
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(x), y),
                        prefix + "gemv_boolean: x has 9 elements, expected 10");
    REQUIRE_THROWS_WITH(backend.gemv_boolean(m, BooleanActivations<std::uint64_t>::binarize(dx), x),
                        prefix + "gemv_boolean: y has 9 elements, expected 3");
}
