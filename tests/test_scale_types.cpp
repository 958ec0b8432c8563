#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/core/serialization.hpp>
#include <multibool/nn/multibool_linear.hpp>
#include <multibool/solvers/greedy_residual.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2);
static_assert(std::is_trivially_copyable_v<half> && std::is_trivially_copyable_v<bfloat16>);
static_assert(ScaleType<float> && ScaleType<double> && ScaleType<half> && ScaleType<bfloat16>);
static_assert(!ScaleType<int> && !ScaleType<long double> && !ScaleType<std::uint16_t>);
static_assert(!std::is_convertible_v<float, half> && !std::is_convertible_v<half, float>,
              "conversions must be explicit: a silent rounding to 16 bits is a bug");
static_assert(half(1.0f).bits() == 0x3C00 && half(-2.0).bits() == 0xC000 && half(0).bits() == 0);
static_assert(bfloat16(1.0f).bits() == 0x3F80 && bfloat16(-2.0).bits() == 0xC000);
static_assert(static_cast<float>(half::from_bits(0x0001)) == 0x1p-24f);
static_assert(static_cast<float>(half::from_bits(0x7BFF)) == 65504.0f);

namespace {

// Independent of the library: the value of a 16-bit pattern from the IEEE definition.
double reference_value(std::uint16_t bits, int exponent_bits, int mantissa_bits) {
    const int bias = (1 << (exponent_bits - 1)) - 1;
    const int exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1);
    const int mantissa = bits & ((1 << mantissa_bits) - 1);
    double magnitude = 0.0;
    if (exponent == (1 << exponent_bits) - 1) {
        magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
    } else if (exponent == 0) {
        magnitude = std::ldexp(double(mantissa), 1 - bias - mantissa_bits);
    } else {
        magnitude = std::ldexp(double(mantissa + (1 << mantissa_bits)), exponent - bias - mantissa_bits);
    }
    return (bits & 0x8000) != 0 ? -magnitude : magnitude;
}

// Independent of the library: the nearest 16-bit pattern to a float by search, ties to the even
// pattern. The infinity pattern stands for the next power of two, as IEEE's overflow rule says.
std::uint16_t reference_round(float value, int exponent_bits, int mantissa_bits) {
    const auto infinity = static_cast<std::uint16_t>(((1 << exponent_bits) - 1) << mantissa_bits);
    const int bias = (1 << (exponent_bits - 1)) - 1;
    auto magnitude_of = [&](std::uint16_t p) {
        return p == infinity ? std::ldexp(1.0, (1 << exponent_bits) - 1 - bias)
                             : reference_value(p, exponent_bits, mantissa_bits);
    };
    const std::uint16_t sign = std::signbit(value) ? 0x8000 : 0;
    const double a = std::fabs(double(value));
    if (a >= magnitude_of(infinity)) return sign | infinity;
    std::uint16_t below = 0;  // the largest pattern whose magnitude is <= a
    std::uint16_t above = infinity;
    while (above - below > 1) {
        const auto middle = static_cast<std::uint16_t>((below + above) / 2);
        (magnitude_of(middle) <= a ? below : above) = middle;
    }
    const double distance_below = a - magnitude_of(below);
    const double distance_above = magnitude_of(above) - a;
    const bool take_above = distance_above < distance_below || (distance_above == distance_below && above % 2 == 0);
    return sign | (take_above ? above : below);
}

template <class Float16Type>
void check_every_pattern_round_trips() {
    constexpr int e = Float16Type::exponent_bits;
    constexpr int m = Float16Type::mantissa_bits;
    for (std::uint32_t pattern = 0; pattern <= 0xFFFF; ++pattern) {
        const auto bits = static_cast<std::uint16_t>(pattern);
        CAPTURE(bits);
        const auto value = Float16Type::from_bits(bits);
        const float f = static_cast<float>(value);
        const double reference = reference_value(bits, e, m);
        if (std::isnan(reference)) {
            REQUIRE(std::isnan(f));
            REQUIRE(std::isnan(static_cast<double>(value)));
            REQUIRE_FALSE(is_finite(value));
            REQUIRE_FALSE(value == value);
            // Back to 16 bits: still NaN, sign and payload kept, quiet bit set (as F16C does).
            REQUIRE(Float16Type(f).bits() == (bits | (1u << (m - 1))));
        } else {
            REQUIRE(double(f) == reference);
            REQUIRE(static_cast<double>(value) == reference);
            REQUIRE(std::signbit(f) == ((bits & 0x8000) != 0));
            REQUIRE(is_finite(value) == std::isfinite(reference));
            REQUIRE(Float16Type(f).bits() == bits);
            REQUIRE(Float16Type(double(f)).bits() == bits);
            REQUIRE(value == value);
        }
    }
}

// Every tie between neighbouring patterns and the floats just beside it, random floats spread
// over the exponents around the format's range, and the overflow boundary.
template <class Float16Type>
void check_rounding_against_reference(std::mt19937_64& rng) {
    constexpr int e = Float16Type::exponent_bits;
    constexpr int m = Float16Type::mantissa_bits;
    const auto infinity = static_cast<std::uint16_t>(((1 << e) - 1) << m);
    auto check = [&](float f) {
        CAPTURE(f);
        REQUIRE(Float16Type(f).bits() == reference_round(f, e, m));
    };
    const int bias = (1 << (e - 1)) - 1;
    for (std::uint16_t p = 0; p < infinity; ++p) {
        const double next = p + 1 == infinity ? std::ldexp(1.0, (1 << e) - 1 - bias) : reference_value(p + 1, e, m);
        const auto tie = static_cast<float>((reference_value(p, e, m) + next) / 2);  // exact in float
        REQUIRE(double(tie) == (reference_value(p, e, m) + next) / 2);
        for (float f : {tie, std::nextafter(tie, 0.0f), std::nextafter(tie, 1e30f)}) {
            check(f);
            check(-f);
        }
    }
    std::uniform_int_distribution<int> exponent(-bias - m - 3, std::min(bias + 3, 127));
    std::uniform_int_distribution<std::uint32_t> mantissa(0, (1u << 23) - 1);
    std::bernoulli_distribution negative(0.5);
    for (int n = 0; n < 200000; ++n) {
        const float f = std::ldexp(1.0f + float(mantissa(rng)) * 0x1p-23f, exponent(rng));
        check(negative(rng) ? -f : f);
    }
    std::uniform_int_distribution<std::uint32_t> any_bits;
    for (int n = 0; n < 200000; ++n) {
        float f = 0.0f;
        const std::uint32_t bits = any_bits(rng);
        std::memcpy(&f, &bits, sizeof f);
        if (!std::isnan(f)) check(f);
    }
    for (float f : {0.0f, -0.0f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()})
        check(f);
}

// sum_j |W_ij x_j|: the scale of the rounding error of row i's product.
double bound_of_terms(std::span<const float> dense, std::size_t cols, std::span<const float> x, std::size_t i) {
    double sum = 0.0;
    for (std::size_t j = 0; j < cols; ++j) sum += std::fabs(double(dense[i * cols + j]) * x[j]);
    return sum;
}

}  // namespace

TEST_CASE("half and bfloat16: every bit pattern converts to float exactly and back", "[core][scale_types]") {
    check_every_pattern_round_trips<half>();
    check_every_pattern_round_trips<bfloat16>();
}

TEST_CASE("half and bfloat16 round floats to nearest, ties to even, as a reference search does",
          "[core][scale_types]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    check_rounding_against_reference<half>(rng);
    check_rounding_against_reference<bfloat16>(rng);
    // Hand-picked: the largest half, the overflow tie (to the even pattern, infinity), subnormals.
    REQUIRE(half(65504.0f).bits() == 0x7BFF);
    REQUIRE(half(65519.99f).bits() == 0x7BFF);
    REQUIRE(half(65520.0f).bits() == 0x7C00);
    REQUIRE(half(-1e9f).bits() == 0xFC00);
    REQUIRE(half(0x1p-25f).bits() == 0x0000);  // tie between 0 and the smallest subnormal: even
    REQUIRE(half(0x1.8p-25f).bits() == 0x0001);
    REQUIRE(half(0x3p-25f).bits() == 0x0002);  // tie between subnormals 1 and 2: even
    REQUIRE(half(-0.0f).bits() == 0x8000);
    REQUIRE(bfloat16(std::numeric_limits<float>::max()).bits() == 0x7F80);
    REQUIRE(bfloat16(0x1.01p0f).bits() == 0x3F80);  // tie: even
    REQUIRE(bfloat16(0x1.03p0f).bits() == 0x3F82);
}

TEST_CASE("half rows widen and narrow as the element casts do, on every input", "[core][scale_types]") {
    // Every half pattern, in one row (its length is not a multiple of 8, so the tail runs too).
    std::vector<half> all(65536 + 3);
    for (std::size_t b = 0; b < all.size(); ++b) all[b] = half::from_bits(std::uint16_t(b));
    std::vector<float> widened(all.size());
    widen(all, widened);
    std::size_t widened_wrong = 0;  // the first pattern that widens differently, or all.size()
    while (widened_wrong < all.size() && std::bit_cast<std::uint32_t>(widened[widened_wrong]) ==
                                             std::bit_cast<std::uint32_t>(static_cast<float>(all[widened_wrong])))
        ++widened_wrong;
    CHECK(widened_wrong == all.size());
    // Floats: a stride through every exponent and mantissa region, NaN payloads included, plus
    // random patterns.
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::vector<float> floats;
    for (std::uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += 4099)
        floats.push_back(std::bit_cast<float>(std::uint32_t(bits)));
    std::uniform_int_distribution<std::uint32_t> any;
    for (int e = 0; e < 100001; ++e) floats.push_back(std::bit_cast<float>(any(rng)));
    std::vector<half> narrowed(floats.size());
    narrow(floats, narrowed);
    std::size_t first_wrong = 0;  // the first float that narrows differently, or floats.size()
    while (first_wrong < floats.size() && narrowed[first_wrong].bits() == half(floats[first_wrong]).bits())
        ++first_wrong;
    CAPTURE(first_wrong < floats.size() ? std::bit_cast<std::uint32_t>(floats[first_wrong]) : 0u);
    CHECK(first_wrong == floats.size());
}

TEST_CASE("doubles round once, straight to 16 bits; integers convert; NaN stays NaN", "[core][scale_types]") {
    // 1 + 2^-11 + 2^-40 lies just above the tie between 1 and 1 + 2^-10. Through float the
    // 2^-40 would be lost and the tie would go to even (1.0): a double rounding.
    const double just_above_tie = 1.0 + 0x1p-11 + 0x1p-40;
    REQUIRE(half(just_above_tie).bits() == 0x3C01);
    REQUIRE(half(static_cast<float>(just_above_tie)).bits() == 0x3C00);
    REQUIRE(bfloat16(1.0 + 0x1p-8 + 0x1p-40).bits() == 0x3F81);
    REQUIRE(half(3) == half(3.0f));
    REQUIRE(half(100000).bits() == 0x7C00);
    REQUIRE(half(0.0f) == half(-0.0f));
    for (float nan : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::signaling_NaN()}) {
        CAPTURE(nan);
        REQUIRE(std::isnan(static_cast<float>(half(nan))));
        REQUIRE(std::isnan(static_cast<float>(bfloat16(nan))));
        REQUIRE(std::isnan(static_cast<float>(half(double(nan)))));
        REQUIRE(std::signbit(static_cast<float>(half(nan))) == std::signbit(nan));
        REQUIRE_FALSE(is_finite(half(nan)));
    }
    // A NaN whose payload lies only in the low bits must not become infinity.
    REQUIRE(std::isnan(static_cast<float>(half(std::bit_cast<float>(0x7F800001u)))));
    REQUIRE(is_finite(half(65504.0f)));
    REQUIRE_FALSE(is_finite(half(65520.0f)));
    REQUIRE_FALSE(is_finite(bfloat16(std::numeric_limits<double>::max())));
    REQUIRE(is_finite(1.0f));
    REQUIRE_FALSE(is_finite(std::numeric_limits<double>::infinity()));
}

namespace {

// Every ScalarBackend product of m against a float64 reference built from dequantize(), within
// the float rounding of sums of at most cols terms (one wrong sign moves a result by about
// 2 * alpha * |x_j|, far beyond it).
template <class Matrix>
void check_products_near_reference(const Matrix& m, std::mt19937_64& rng) {
    using Word = typename Matrix::word_type;
    const std::size_t rows = m.rows(), cols = m.cols();
    const ScalarBackend backend;
    const auto dense = m.dequantize();
    const double tolerance = 4.0 * double(cols + Matrix::kernels * m.groups_per_row()) * 0x1p-24;
    auto require_near = [&](double found, double reference, double bound) {
        REQUIRE(std::fabs(found - reference) <= tolerance * bound + 1e-30);
    };
    const auto xs = testing::random_floats(2 * cols, rng);
    std::vector<float> ys(2 * rows);
    backend.gemm(m, MatrixView<const float>(std::span<const float>(xs), 2, cols),
                 MatrixView<float>(std::span<float>(ys), 2, rows));
    for (std::size_t t = 0; t < 2; ++t) {
        const std::span<const float> x(xs.data() + t * cols, cols);
        const auto reference = testing::dense_gemv(dense, rows, cols, x);
        std::vector<float> y(rows);
        backend.gemv(m, x, y);
        for (std::size_t i = 0; i < rows; ++i) {
            CAPTURE(t, i);
            require_near(y[i], reference[i], bound_of_terms(dense, cols, x, i));
            REQUIRE(ys[t * rows + i] == y[i]);
        }
    }

    const auto dys = testing::random_floats(2 * rows, rng);
    std::vector<float> dxs(2 * cols);
    backend.gemm_transposed(m, MatrixView<const float>(std::span<const float>(dys), 2, rows),
                            MatrixView<float>(std::span<float>(dxs), 2, cols));
    for (std::size_t t = 0; t < 2; ++t) {
        const std::span<const float> dy(dys.data() + t * rows, rows);
        std::vector<float> dx(cols);
        backend.gemv_transposed(m, dy, dx);
        for (std::size_t j = 0; j < cols; ++j) {
            double reference = 0.0, bound = 0.0;
            for (std::size_t i = 0; i < rows; ++i) {
                reference += double(dense[i * cols + j]) * dy[i];
                bound += std::fabs(double(dense[i * cols + j]) * dy[i]);
            }
            CAPTURE(t, j);
            require_near(dx[j], reference, bound);
            REQUIRE(dxs[t * cols + j] == dx[j]);
        }
    }

    const auto x = testing::random_floats(cols, rng);
    const auto xq = Int8Activations<Word>::quantize(x);
    std::vector<float> u(cols);
    for (std::size_t j = 0; j < cols; ++j) u[j] = float(xq.value(j));
    std::vector<float> y(rows);
    backend.gemv_int8(m, xq, y);
    auto reference = testing::dense_gemv(dense, rows, cols, u);
    for (std::size_t i = 0; i < rows; ++i) {
        CAPTURE(i);
        require_near(y[i], reference[i] * xq.scale(), bound_of_terms(dense, cols, u, i) * xq.scale());
    }

    const auto xb = BooleanActivations<Word>::binarize(x);
    std::vector<float> signs(cols);
    for (std::size_t j = 0; j < cols; ++j) signs[j] = float(xb.sign(j));
    backend.gemv_boolean(m, xb, y);
    reference = testing::dense_gemv(dense, rows, cols, signs);
    for (std::size_t i = 0; i < rows; ++i) {
        CAPTURE(i);
        require_near(y[i], reference[i], bound_of_terms(dense, cols, signs, i));
    }
}

// The greedy residual written out independently: scales rounded to Scale, and the residual
// taken against the rounded scale.
template <class Scale>
std::vector<Scale> reference_greedy_scales(std::span<const float> w, std::size_t rows, std::size_t cols,
                                           std::size_t kernels, std::size_t group) {
    const std::size_t groups = (cols + group - 1) / group;
    std::vector<Scale> scales(kernels * rows * groups);
    for (std::size_t i = 0; i < rows; ++i) {
        std::vector<double> r(w.begin() + i * cols, w.begin() + (i + 1) * cols);
        for (std::size_t k = 0; k < kernels; ++k) {
            for (std::size_t g = 0; g < groups; ++g) {
                const std::size_t end = std::min(cols, (g + 1) * group);
                double sum = 0.0;
                for (std::size_t j = g * group; j < end; ++j) sum += std::fabs(r[j]);
                const Scale alpha(sum / double(end - g * group));
                scales[(k * rows + i) * groups + g] = alpha;
                for (std::size_t j = g * group; j < end; ++j) r[j] -= double(alpha) * (r[j] >= 0.0 ? 1.0 : -1.0);
            }
        }
    }
    return scales;
}

}  // namespace

TEST_CASE("a half-scale matrix from greedy_residual: rounded scales, and every product matches float64",
          "[core][scale_types]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<3, 128, half, std::uint64_t>;
    const std::size_t rows = 6;
    for (std::size_t cols : {128u, 192u, 172u, 384u}) {
        CAPTURE(cols);
        const auto w = testing::random_floats(rows * cols, rng, 0.02f);
        const auto m = greedy_residual<Matrix>(MatrixView<const float>(std::span<const float>(w), rows, cols));

        const auto expected = reference_greedy_scales<half>(w, rows, cols, 3, 128);
        const auto stored = m.scale_data();
        REQUIRE(stored.size() == expected.size());
        for (std::size_t s = 0; s < stored.size(); ++s) {
            CAPTURE(s);
            REQUIRE(stored[s].bits() == expected[s].bits());
        }
        // fp16 scales cost little accuracy against float ones (11 of 24 bits per scale).
        const auto float_scales =
            greedy_residual<BitPlaneMatrix<3, 128>>(MatrixView<const float>(std::span<const float>(w), rows, cols));
        const double error_half = testing::relative_frobenius_error(w, m.dequantize());
        const double error_float = testing::relative_frobenius_error(w, float_scales.dequantize());
        CAPTURE(error_half, error_float);
        REQUIRE(error_half < error_float + 2e-3);
        check_products_near_reference(m, rng);
    }
    using Bf16Matrix = BitPlaneMatrix<2, per_row, bfloat16, std::uint8_t>;
    const auto w = testing::random_floats(5 * 100, rng);
    const auto bf = greedy_residual<Bf16Matrix>(MatrixView<const float>(std::span<const float>(w), 5, 100));
    const auto expected = reference_greedy_scales<bfloat16>(w, 5, 100, 2, 100);
    for (std::size_t s = 0; s < expected.size(); ++s) REQUIRE(bf.scale_data()[s].bits() == expected[s].bits());
    check_products_near_reference(bf, rng);
}

TEST_CASE("half and bfloat16 scales give exact products where float does", "[core][scale_types]") {
    // Power-of-two scales and small-integer activations: every product is exact, so it must
    // equal the float64 reference bit for bit, whichever type stores the scales.
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto check = [&]<class Matrix>() {
        for (std::size_t cols : {1u, 100u, 172u, 256u}) {
            CAPTURE(cols);
            const auto m = testing::random_matrix<Matrix>(4, cols, rng);
            const auto dense = m.dequantize();
            const auto x = testing::small_integers(cols, rng);
            std::vector<float> y(4), dx(cols);
            const ScalarBackend backend;
            backend.gemv(m, x, y);
            const auto reference = testing::dense_gemv(dense, 4, cols, x);
            for (std::size_t i = 0; i < 4; ++i) REQUIRE(double(y[i]) == reference[i]);
            const auto dy = testing::small_integers(4, rng);
            backend.gemv_transposed(m, dy, dx);
            for (std::size_t j = 0; j < cols; ++j) {
                double r = 0.0;
                for (std::size_t i = 0; i < 4; ++i) r += double(dense[i * cols + j]) * dy[i];
                REQUIRE(double(dx[j]) == r);
            }
            const auto xb = BooleanActivations<typename Matrix::word_type>::binarize(x);
            std::vector<float> signs(cols);
            for (std::size_t j = 0; j < cols; ++j) signs[j] = float(xb.sign(j));
            backend.gemv_boolean(m, xb, y);
            const auto boolean_reference = testing::dense_gemv(dense, 4, cols, signs);
            for (std::size_t i = 0; i < 4; ++i) REQUIRE(double(y[i]) == boolean_reference[i]);
        }
    };
    check.operator()<BitPlaneMatrix<3, 128, half, std::uint64_t>>();
    check.operator()<BitPlaneMatrix<2, 32, bfloat16, std::uint8_t>>();
    check.operator()<BitPlaneMatrix<1, per_row, half, std::uint32_t>>();
}

TEST_CASE("MultiBoolLinear takes the scale type as its last parameter", "[core][scale_types]") {
    std::mt19937_64 rng(fresh_seed());
    using Layer = MultiBoolLinear<3, 128, half, std::uint64_t, ScalarBackend>;
    static_assert(std::is_same_v<Layer::matrix_type, BitPlaneMatrix<3, 128, half, std::uint64_t>>);
    static_assert(std::is_same_v<MultiBoolLinear<3, 128>::matrix_type, BitPlaneMatrix<3, 128>>);
    const auto w = testing::random_floats(4 * 256, rng);
    const auto layer = Layer::from_dense(MatrixView<const float>(std::span<const float>(w), 4, 256));
    REQUIRE(layer.weights().bits_per_weight() == 3.375);
    const auto x = testing::small_integers(256, rng);
    std::vector<float> y(4);
    layer.forward(x, y);
    const auto reference = testing::dense_gemv(layer.weights().dequantize(), 4, 256, x);
    for (std::size_t i = 0; i < 4; ++i) REQUIRE(y[i] == Approx(reference[i]).epsilon(1e-5).margin(1e-4));
}

TEST_CASE("fp16 scales at K=3, G=128 cost 3.375 bits per weight", "[core][scale_types]") {
    // docs/METHOD.md §1: K * (1 + 16 / G) bits per weight when cols is a multiple of G and of the word.
    for (std::size_t cols : {128u, 256u, 384u, 4096u}) {
        CAPTURE(cols);
        REQUIRE(BitPlaneMatrix<3, 128, half, std::uint64_t>(8, cols).bits_per_weight() == 3.375);
        REQUIRE(BitPlaneMatrix<3, 128, bfloat16, std::uint64_t>(8, cols).bits_per_weight() == 3.375);
        REQUIRE(BitPlaneMatrix<2, 128, half, std::uint64_t>(8, cols).bits_per_weight() == 2.25);
        REQUIRE(BitPlaneMatrix<1, 128, half, std::uint8_t>(8, cols).bits_per_weight() == 1.125);
        REQUIRE(BitPlaneMatrix<3, 128>(8, cols).bits_per_weight() == 3.75);
    }
    // 3 planes of 4 words of 8 bytes and 3 * 2 half scales per row.
    REQUIRE(BitPlaneMatrix<3, 128, half, std::uint64_t>(5, 256).storage_bytes() == 5 * (3 * 4 * 8 + 3 * 2 * 2));
}

TEST_CASE("non-finite 16-bit scales are refused with their place", "[core][scale_types]") {
    using Matrix = BitPlaneMatrix<2, 4, half, std::uint8_t>;
    Matrix m(2, 6);
    REQUIRE_THROWS_WITH(m.set_scale(1, 0, 1, half(std::numeric_limits<float>::quiet_NaN())),
                        Catch::Contains("BitPlaneMatrix 2x6: scale of kernel 1 row 0 group 1 is") &&
                            Catch::Contains("nan") && Catch::Contains("not a finite number"));
    REQUIRE_THROWS_WITH(m.set_scale(0, 1, 0, half(70000.0f)),
                        Catch::Contains("kernel 0 row 1 group 0 is inf, not a finite number"));
    m.set_scale(0, 1, 0, half(0.25f));
    REQUIRE(m.scale(0, 1, 0) == half(0.25f));
    std::vector<std::int8_t> signs(2 * 2 * 6, 1);
    std::vector<bfloat16> scales(8, bfloat16(0.5f));
    scales[6] = bfloat16::from_bits(0xFF80);  // -inf
    REQUIRE_THROWS_WITH((BitPlaneMatrix<2, 4, bfloat16, std::uint8_t>::from_planes(2, 6, signs, scales)),
                        Catch::Contains("scale of kernel 1 row 1 group 0 is -inf"));
    // Weights whose mean magnitude exceeds fp16's range cannot be given half scales.
    const std::vector<float> huge(8, 1e5f);
    REQUIRE_THROWS_WITH((greedy_residual<BitPlaneMatrix<1, 4, half, std::uint8_t>>(
                            MatrixView<const float>(std::span<const float>(huge), 2, 4))),
                        Catch::Contains("kernel 0 row 0 group 0 needs a scale of 100000") &&
                            Catch::Contains("beyond the range of the scale type"));
}

TEST_CASE("half and bfloat16 scales round-trip through save/load with their own type code",
          "[core][scale_types][serialization]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto round_trip = [&]<class Matrix>() {
        for (std::size_t cols : {1u, 172u, 256u}) {
            const auto w = testing::random_floats(3 * cols, rng);
            const auto m = greedy_residual<Matrix>(MatrixView<const float>(std::span<const float>(w), 3, cols));
            const auto bytes = testing::to_bytes(m);
            REQUIRE(bytes.size() == 52 + m.storage_bytes() + 8);
            const auto loaded = testing::from_bytes<Matrix>(bytes);
            REQUIRE(loaded == m);
            for (std::size_t s = 0; s < m.scale_data().size(); ++s)
                REQUIRE(loaded.scale_data()[s].bits() == m.scale_data()[s].bits());
        }
    };
    round_trip.operator()<BitPlaneMatrix<3, 128, half, std::uint64_t>>();
    round_trip.operator()<BitPlaneMatrix<2, per_row, bfloat16, std::uint16_t>>();
    round_trip.operator()<BitPlaneMatrix<1, 32, half, std::uint8_t>>();

    const auto half_bytes =
        testing::to_bytes(testing::random_matrix<BitPlaneMatrix<2, 64, half, std::uint32_t>>(3, 70, rng));
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 64, float, std::uint32_t>>(half_bytes)),
                        "memory: field 'scale_type': expected 1, found 3");
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 64, bfloat16, std::uint32_t>>(half_bytes)),
                        "memory: field 'scale_type': expected 4, found 3");
}

namespace {

std::string with_checksum(const std::string& body) {
    Fnv1a h;
    h.update(std::as_bytes(std::span<const char>(body.data(), body.size())));
    const std::uint64_t checksum = h.value();
    return body + std::string(reinterpret_cast<const char*>(&checksum), sizeof checksum);
}

}  // namespace

TEST_CASE("the half-scale record is pinned byte for byte", "[core][scale_types][serialization]") {
    // A 1x3 matrix, K = 1, G = 8, 8-bit words, signs [+, -, +], scale 0.5 as fp16 (0x3800).
    const unsigned char body[] = {
        'M',  'B',  'O', 'O', 'L', 'B', 'P', 'M',  // magic
        1,    0,    0,   0,                        // version
        1,    0,    0,   0,                        // kernels
        8,    0,    0,   0,                        // group_size
        8,    0,    0,   0,                        // word_bits
        3,    0,    0,   0,                        // scale_type: IEEE binary16
        1,    0,    0,   0,   0,   0,   0,   0,    // rows
        3,    0,    0,   0,   0,   0,   0,   0,    // cols
        3,    0,    0,   0,   0,   0,   0,   0,    // payload_bytes
        0x05,                                      // plane word: bits 0 and 2 set
        0x00, 0x38,                                // 0.5 in binary16
    };
    const std::string record = with_checksum(std::string(reinterpret_cast<const char*>(body), sizeof body));
    using Matrix = BitPlaneMatrix<1, 8, half, std::uint8_t>;
    const std::vector<std::int8_t> signs{1, -1, 1};
    const std::vector<half> scales{half(0.5f)};
    const auto m = Matrix::from_planes(1, 3, signs, scales);
    REQUIRE(testing::to_bytes(m) == record);
    REQUIRE(testing::from_bytes<Matrix>(record) == m);

    auto nan_scale = std::string(reinterpret_cast<const char*>(body), sizeof body);
    nan_scale[54] = static_cast<char>(0x7E);  // 0x7E00: a quiet NaN
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(with_checksum(nan_scale)),
                        Catch::Contains("field 'payload'") && Catch::Contains("not a finite number"));
}

TEST_CASE("scale_cast keeps every bit and rounds every scale to the new type", "[core][scale_types]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Trained = BitPlaneMatrix<3, 32, float, std::uint64_t>;
    auto m = testing::random_matrix<Trained>(7, 70, rng);
    std::normal_distribution<float> alpha(0.0f, 0.05f);  // not representable in fp16: rounding is tested
    for (std::size_t k = 0; k < 3; ++k) {
        for (std::size_t i = 0; i < 7; ++i) {
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) m.set_scale(k, i, g, alpha(rng));
        }
    }
    const auto deployed = scale_cast<half>(m);
    static_assert(std::is_same_v<decltype(deployed), const BitPlaneMatrix<3, 32, half, std::uint64_t>>);
    REQUIRE(deployed.rows() == 7);
    REQUIRE(deployed.cols() == 70);
    for (std::size_t k = 0; k < 3; ++k) {
        for (std::size_t i = 0; i < 7; ++i) {
            for (std::size_t j = 0; j < 70; ++j) REQUIRE(deployed.sign(k, i, j) == m.sign(k, i, j));
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                REQUIRE(std::bit_cast<std::uint16_t>(deployed.scale(k, i, g)) ==
                        std::bit_cast<std::uint16_t>(half(m.scale(k, i, g))));
            }
        }
    }
    auto huge = m;
    huge.set_scale(2, 4, 1, 1e6f);  // beyond fp16's 65504
    CHECK_THROWS_WITH(scale_cast<half>(huge), Catch::Contains("kernel 2 row 4 group 1"));
}
