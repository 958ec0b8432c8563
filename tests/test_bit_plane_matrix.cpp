#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

// The last word of every row of every plane has no bit set beyond cols.
template <class Matrix>
bool padding_is_clear(const Matrix& m) {
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            const auto row = m.plane_row(k, i);
            if (!row.empty() && (row.back() & m.padding_mask()) != 0) return false;
        }
    }
    return true;
}

}  // namespace

TEMPLATE_TEST_CASE("explicit planes round-trip through the packed bits", "[core]", std::uint8_t, std::uint16_t,
                   std::uint32_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (std::size_t cols : {1u, 7u, 100u, 172u, 4097u}) {
        CAPTURE(cols);
        using Matrix = BitPlaneMatrix<3, 64, float, TestType>;
        const std::size_t rows = 5;
        const std::size_t groups = (cols + 63) / 64;
        std::vector<std::int8_t> signs(3 * rows * cols);
        std::vector<float> scales(3 * rows * groups);
        std::bernoulli_distribution coin(0.5);
        std::uniform_real_distribution<float> magnitude(-2.0f, 2.0f);
        for (auto& s : signs) s = coin(rng) ? 1 : -1;
        for (auto& a : scales) a = magnitude(rng);

        const auto m = Matrix::from_planes(rows, cols, signs, scales);
        REQUIRE(m.groups_per_row() == groups);
        REQUIRE(m.words_per_row() == (cols + Matrix::word_bits - 1) / Matrix::word_bits);
        REQUIRE(padding_is_clear(m));
        const auto dense = m.dequantize();
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                double w = 0.0;
                for (std::size_t k = 0; k < 3; ++k) {
                    REQUIRE(m.sign(k, i, j) == signs[(k * rows + i) * cols + j]);
                    w += double(scales[(k * rows + i) * groups + j / 64]) * signs[(k * rows + i) * cols + j];
                }
                REQUIRE(dense[i * cols + j] == Approx(w).margin(1e-6));
                REQUIRE(m.weight(i, j) == dense[i * cols + j]);
            }
        }
    }
}

TEST_CASE("set_sign and flip agree with a dense sign array and keep padding clear", "[core]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    BitPlaneMatrix<2, 32, float, std::uint32_t> m(3, 45);
    std::vector<int> model(2 * 3 * 45, -1);
    std::uniform_int_distribution<std::size_t> pick(0, model.size() - 1);
    for (int step = 0; step < 2000; ++step) {
        const std::size_t e = pick(rng);
        const std::size_t k = e / (3 * 45), i = e / 45 % 3, j = e % 45;
        if (step % 2 == 0) {
            m.flip(k, i, j);
            model[e] = -model[e];
        } else {
            const int s = (step / 2) % 3 == 0 ? 1 : -1;
            m.set_sign(k, i, j, s);
            model[e] = s;
        }
    }
    for (std::size_t e = 0; e < model.size(); ++e) {
        REQUIRE(m.sign(e / (3 * 45), e / 45 % 3, e % 45) == model[e]);
    }
    REQUIRE(padding_is_clear(m));
}

namespace {

// A BitPlaneStorage that shows the planes of a real matrix with every padding bit set: what a
// kernel sees if it reads past the end of a row or forgets a mask.
template <class Matrix>
class GarbagePadding {
public:
    using word_type = typename Matrix::word_type;
    using scale_type = typename Matrix::scale_type;
    static constexpr std::size_t kernels = Matrix::kernels;
    static constexpr std::size_t word_bits = Matrix::word_bits;

    explicit GarbagePadding(const Matrix& m) : m_(m), words_(m.words().begin(), m.words().end()) {
        for (std::size_t r = 0; r < kernels * m.rows(); ++r)
            words_[(r + 1) * m.words_per_row() - 1] |= m.padding_mask();
    }
    std::size_t rows() const { return m_.rows(); }
    std::size_t cols() const { return m_.cols(); }
    std::size_t group_size() const { return m_.group_size(); }
    std::size_t groups_per_row() const { return m_.groups_per_row(); }
    std::size_t words_per_row() const { return m_.words_per_row(); }
    std::size_t group_begin(std::size_t g) const { return m_.group_begin(g); }
    std::size_t group_end(std::size_t g) const { return m_.group_end(g); }
    std::span<const word_type> plane_row(std::size_t k, std::size_t i) const {
        return std::span<const word_type>(words_).subspan((k * rows() + i) * words_per_row(), words_per_row());
    }
    std::span<const scale_type> scales(std::size_t k, std::size_t i) const { return m_.scales(k, i); }

private:
    const Matrix& m_;
    std::vector<word_type> words_;
};

}  // namespace

TEMPLATE_TEST_CASE("padding bits never change a product", "[core]", std::uint8_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<3, 32, float, TestType>;
    for (std::size_t cols : {1u, 13u, 100u, 172u}) {
        CAPTURE(cols);
        const auto m = testing::random_matrix<Matrix>(4, cols, rng);
        const GarbagePadding<Matrix> garbage(m);
        static_assert(BitPlaneStorage<GarbagePadding<Matrix>>);
        REQUIRE(garbage.plane_row(2, 3).back() != m.plane_row(2, 3).back());

        const ScalarBackend backend;
        const auto x = testing::random_floats(cols, rng);
        const auto dy = testing::random_floats(4, rng);
        std::vector<float> y(4), y_garbage(4), dx(cols), dx_garbage(cols);
        backend.gemv(m, x, y);
        backend.gemv(garbage, x, y_garbage);
        REQUIRE(y == y_garbage);
        backend.gemv_int8(m, Int8Activations<TestType>::quantize(x), y);
        backend.gemv_int8(garbage, Int8Activations<TestType>::quantize(x), y_garbage);
        REQUIRE(y == y_garbage);
        backend.gemv_boolean(m, BooleanActivations<TestType>::binarize(x), y);
        backend.gemv_boolean(garbage, BooleanActivations<TestType>::binarize(x), y_garbage);
        REQUIRE(y == y_garbage);
        backend.gemv_transposed(m, dy, dx);
        backend.gemv_transposed(garbage, dy, dx_garbage);
        REQUIRE(dx == dx_garbage);
    }
}

TEST_CASE("bit j of a row is bit j % w of word j / w, and 1 means +1", "[core]") {
    // Two kernels, 2 rows, 10 columns in 8-bit words: planes are stored kernel by kernel, row by row.
    const std::vector<std::uint8_t> words{0x05, 0x02, 0x00, 0x00, 0xFF, 0x03, 0x80, 0x01};
    const BitPlaneMatrix<2, per_row, float, std::uint8_t> m(2, 10, words, std::vector<float>{1, 2, 3, 4});
    const std::vector<int> kernel0_row0{+1, -1, +1, -1, -1, -1, -1, -1, -1, +1};
    const std::vector<int> kernel1_row1{-1, -1, -1, -1, -1, -1, -1, +1, +1, -1};
    for (std::size_t j = 0; j < 10; ++j) {
        CAPTURE(j);
        REQUIRE(m.sign(0, 0, j) == kernel0_row0[j]);
        REQUIRE(m.sign(0, 1, j) == -1);
        REQUIRE(m.sign(1, 0, j) == 1);
        REQUIRE(m.sign(1, 1, j) == kernel1_row1[j]);
    }
    // Scales are stored kernel by kernel, row by row: W_hat[1, 7] = 2 * (-1) + 4 * (+1).
    REQUIRE(m.weight(1, 7) == 2.0f);
}

TEST_CASE("a moved-from matrix is empty, and impossible sizes are refused", "[core]") {
    std::mt19937_64 rng(fresh_seed());
    auto source = testing::random_matrix<BitPlaneMatrix<2, 64>>(4, 100, rng);
    const auto copy = source;
    const auto moved = std::move(source);
    REQUIRE(moved == copy);
    REQUIRE(source.rows() == 0);  // NOLINT(bugprone-use-after-move): the state after a move is the point
    REQUIRE(source.cols() == 0);
    REQUIRE(source.words().empty());
    REQUIRE_THROWS_AS((BitPlaneMatrix<8, 1>(std::size_t{1} << 61, 1)), std::length_error);
    REQUIRE_THROWS_AS((BitPlaneMatrix<8, 1>::from_planes(std::size_t{1} << 61, 2, {}, {})), std::length_error);
}

TEST_CASE("storage accounting counts planes, row padding and scales", "[core]") {
    // K=3, G=128, 64-bit words, float scales, 4x256: 3*4*4 words of 8 bytes + 3*4*2 floats.
    const BitPlaneMatrix<3, 128> aligned(4, 256);
    REQUIRE(aligned.storage_bytes() == 384 + 96);
    REQUIRE(aligned.bits_per_weight() == Approx(3.0 * (1.0 + 32.0 / 128.0)));
    // Ragged: 100 columns need 2 words per row (28 padding bits) and 4 groups of 32.
    const BitPlaneMatrix<1, 32> ragged(2, 100);
    REQUIRE(ragged.storage_bytes() == 2 * 2 * 8 + 2 * 4 * 4);
    REQUIRE(ragged.bits_per_weight() == Approx(8.0 * 64 / 200));
    const BitPlaneMatrix<2, per_row, double, std::uint8_t> per_channel(3, 10);
    REQUIRE(per_channel.group_size() == 10);
    REQUIRE(per_channel.groups_per_row() == 1);
    REQUIRE(per_channel.storage_bytes() == 2 * 3 * 2 + 2 * 3 * 8);
}

TEST_CASE("ragged last group covers the remaining columns", "[core]") {
    const BitPlaneMatrix<1, 64> m(1, 172);
    REQUIRE(m.groups_per_row() == 3);
    REQUIRE(m.group_begin(2) == 128);
    REQUIRE(m.group_end(2) == 172);
    REQUIRE(m.group_end(1) == 128);
}

TEST_CASE("invalid planes, scales and raw payloads are refused with a message", "[core]") {
    using Matrix = BitPlaneMatrix<2, 4, float, std::uint8_t>;
    std::vector<std::int8_t> signs(2 * 2 * 6, 1);
    std::vector<float> scales(2 * 2 * 2, 0.5f);
    REQUIRE_NOTHROW(Matrix::from_planes(2, 6, signs, scales));
    signs[13] = 0;
    REQUIRE_THROWS_WITH(Matrix::from_planes(2, 6, signs, scales),
                        Catch::Contains("kernel 1 row 0 col 1 is 0, expected +1 or -1"));
    signs[13] = 1;
    REQUIRE_THROWS_WITH(Matrix::from_planes(2, 7, signs, scales), Catch::Contains("expected 28 signs"));
    scales[5] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(Matrix::from_planes(2, 6, signs, scales),
                        Catch::Contains("scale of kernel 1 row 0 group 1") && Catch::Contains("not a finite"));

    Matrix m(2, 6);
    REQUIRE_THROWS_AS(m.set_scale(0, 0, 0, std::numeric_limits<float>::infinity()), std::invalid_argument);
    // 6 columns in 8-bit words: bits 6 and 7 are padding and may not be set.
    std::vector<std::uint8_t> words(2 * 2, 0);
    words[3] = 0x40;
    REQUIRE_THROWS_WITH(Matrix(2, 6, words, std::vector<float>(8, 1.0f)),
                        Catch::Contains("padding bits set in kernel 1 row 1"));
    REQUIRE_THROWS_WITH(Matrix(2, 6, std::vector<std::uint8_t>(3), std::vector<float>(8, 1.0f)),
                        Catch::Contains("expected 4 plane words, got 3"));
}

TEST_CASE("a matrix with rows but no columns is refused by every constructor", "[core]") {
    using Matrix = BitPlaneMatrix<2, 64>;
    REQUIRE_THROWS_WITH(Matrix(3, 0), Catch::Contains("3x0") && Catch::Contains("at least one column"));
    REQUIRE_THROWS_AS(Matrix(std::size_t{1} << 31, 0, {}, {}), std::invalid_argument);
    REQUIRE_NOTHROW(Matrix(0, 0));
    REQUIRE_NOTHROW(Matrix(0, 5));
}

// Found by the bit_plane_matrix fuzz target: three finite float scales near FLT_MAX loaded, and
// the matrix dequantized to infinity.
TEST_CASE("scales whose magnitudes sum beyond float are refused", "[core]") {
    using Matrix = BitPlaneMatrix<3, 8>;
    const float big = std::numeric_limits<float>::max() * 0.75f;  // two of them sum beyond float
    std::vector<float> scales{big, big, 1.0f};
    REQUIRE_THROWS_WITH(Matrix(1, 8, std::vector<std::uint64_t>(3, 0), scales),
                        Catch::Contains("row 0 group 0") && Catch::Contains("beyond float"));
    Matrix m(1, 8, std::vector<std::uint64_t>(3, 0), {big, 1.0f, 1.0f});
    REQUIRE_THROWS_WITH(m.set_scale(1, 0, 0, big), Catch::Contains("beyond float"));
    REQUIRE(m.scale(1, 0, 0) == 1.0f);  // unchanged by the refused write
    m.set_scale(0, 0, 0, 1.0f);
    REQUIRE_NOTHROW(m.set_scale(1, 0, 0, big));
    for (const float w : m.dequantize()) REQUIRE(std::isfinite(w));
    using Doubles = BitPlaneMatrix<1, 8, double>;
    REQUIRE_THROWS_AS(Doubles(1, 8, std::vector<std::uint64_t>(1, 0), std::vector<double>{1e300}),
                      std::invalid_argument);
}
