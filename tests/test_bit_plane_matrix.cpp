#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/kernels/scalar_backend.hpp>

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
        using Matrix = BitPlaneMatrix<3, 64, TestType>;
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
    BitPlaneMatrix<2, 32, std::uint32_t> m(3, 45);
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

TEST_CASE("padding bits never change a product", "[core]") {
    // A 100-column matrix and the same matrix widened to 128 columns whose extra weights are all
    // +1 but meet zero activations: every product must agree exactly.
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<2, 32, std::uint64_t>;
    const auto narrow = testing::random_matrix<Matrix>(4, 100, rng);
    Matrix wide(4, 128);
    for (std::size_t k = 0; k < 2; ++k) {
        for (std::size_t i = 0; i < 4; ++i) {
            for (std::size_t g = 0; g < 4; ++g) wide.set_scale(k, i, g, narrow.scale(k, i, g));
            for (std::size_t j = 0; j < 128; ++j) wide.set_sign(k, i, j, j < 100 ? narrow.sign(k, i, j) : 1);
        }
    }
    auto x = testing::random_floats(100, rng);
    std::vector<float> x_wide(x);
    x_wide.resize(128, 0.0f);
    std::vector<float> y_narrow(4), y_wide(4);
    const ScalarBackend backend;
    backend.gemv(narrow, x, y_narrow);
    backend.gemv(wide, x_wide, y_wide);
    REQUIRE(y_narrow == y_wide);
    backend.gemv_int8(narrow, Int8Activations<std::uint64_t>::quantize(x), y_narrow);
    backend.gemv_int8(wide, Int8Activations<std::uint64_t>::quantize(x_wide), y_wide);
    REQUIRE(y_narrow == y_wide);
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
    const BitPlaneMatrix<2, per_row, std::uint8_t, double> per_channel(3, 10);
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
    using Matrix = BitPlaneMatrix<2, 4, std::uint8_t>;
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
