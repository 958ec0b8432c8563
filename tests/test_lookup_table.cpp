#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/backends/highway_lookup_backend.hpp>
#include <multibool/backends/lookup_table_gemv.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "lookup_table_checks.hpp"
#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

constexpr std::size_t shape_rows[] = {1, 5, 70, 130};
constexpr std::size_t shape_cols[] = {1, 7, 63, 65, 172, 300, 600};

template <class Packed>
std::size_t slot_of_row(const Packed& packed, std::size_t r) {
    for (std::size_t slot = 0; slot < packed.tile_rows(); ++slot) {
        if (packed.row_of_slot(slot) == r) return slot;
    }
    FAIL("row " << r << " has no slot");
    return 0;
}

// Reads every bit and scale back out of the packed layout as its comment describes it.
template <class Matrix, class Packed>
void check_layout(const Matrix& m, const Packed& packed) {
    constexpr std::size_t K = Matrix::kernels;
    const std::size_t n = packed.tile_rows();
    REQUIRE(packed.blocks().front().begin == 0);
    REQUIRE(packed.blocks().back().end == m.cols());
    for (std::size_t i = 0; i < m.rows(); ++i) {
        const auto weights = packed.tile_weights(i / n);
        const auto scales = packed.tile_scales(i / n);
        const std::size_t slot = slot_of_row(packed, i % n);
        for (std::size_t b = 0; b < packed.blocks().size(); ++b) {
            const auto& block = packed.blocks()[b];
            REQUIRE(block.end - block.begin <= Packed::block_columns);
            REQUIRE(block.begin >= m.group_begin(block.group));
            REQUIRE(block.end <= m.group_end(block.group));
            for (std::size_t k = 0; k < K; ++k) {
                REQUIRE(float(scales[(b * K + k) * n + slot]) == float(m.scales(k, i)[block.group]));
                for (std::size_t c = 0; c < 8 * block.pairs; ++c) {
                    const std::size_t j = block.begin + c;
                    const std::uint8_t byte = weights[((block.first_pair + c / 8) * K + k) * n + i % n];
                    const bool bit = (byte >> (c % 8)) & 1u;
                    // Padding columns past the block read as -1; they meet zero activations.
                    REQUIRE(bit == (j < block.end && column_is_set(m.plane_row(k, i), j)));
                }
            }
        }
    }
}

const auto level_expansion = [](const auto& packed, MatrixView<const float> xs, MatrixView<float> ys,
                                std::size_t threads) { level_expansion_gemm(packed, xs, ys, threads); };

struct CheckLookupProducts {
    std::mt19937_64& rng;

    template <class Matrix>
    void operator()() {
        for (std::size_t rows : shape_rows) {
            for (std::size_t cols : shape_cols) {
                CAPTURE(Matrix::kernels, Matrix::group_size_parameter, Matrix::word_bits, rows, cols);
                const auto m = testing::random_matrix<Matrix>(rows, cols, rng);
                const LookupTableMatrix<Matrix::kernels, typename Matrix::scale_type> packed(m,
                                                                                             lookup_table_tile_rows());
                check_layout(m, packed);
                const HighwayLookupBackend backend(1);
                testing::check_exact_tables(backend, m, packed, rng);
                testing::check_error_bound(backend, m, packed, rng);
                testing::check_level_expansion(m, packed, rng, level_expansion);
                testing::check_exact_level_expansion<decltype(packed)>(m, lookup_table_tile_rows(), rng,
                                                                       level_expansion);
            }
        }
    }
};

}  // namespace

TEMPLATE_TEST_CASE("lookup-table products: layout, exact tables, error bound", "[backends][lookup]", std::uint8_t,
                   std::uint16_t, std::uint32_t, std::uint64_t) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    testing::for_each_k_and_group<TestType>(CheckLookupProducts{rng});
}

TEMPLATE_TEST_CASE("lookup-table products read 16-bit and wide scales", "[backends][lookup]", half, bfloat16, double) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    CheckLookupProducts check{rng};
    check.operator()<BitPlaneMatrix<3, 64, TestType, std::uint64_t>>();
}

TEST_CASE("lookup-table products do not depend on the thread count", "[backends][lookup][threads]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 1000, cols = 700;
    const auto m = testing::random_matrix<BitPlaneMatrix<3, 128, half, std::uint64_t>>(rows, cols, rng);
    const LookupTableMatrix<3, half> packed(m, lookup_table_tile_rows());
    // Small batches through the tables, large ones (on targets with byte dot products) by level
    // expansion.
    const std::size_t tokens = GENERATE(5, 20);
    const auto xs = testing::random_floats(tokens * cols, rng);
    const MatrixView<const float> x_view(std::span<const float>(xs), tokens, cols);
    std::vector<float> one(tokens * rows);
    lookup_table_gemm(packed, x_view, MatrixView<float>(std::span<float>(one), tokens, rows), 1);
    for (std::size_t threads : {2u, 3u, 16u}) {
        std::vector<float> many(tokens * rows);
        lookup_table_gemm(packed, x_view, MatrixView<float>(std::span<float>(many), tokens, rows), threads);
        REQUIRE(many == one);
    }
}

TEST_CASE("lookup-table products refuse bad input, naming it", "[backends][lookup]") {
    std::mt19937_64 rng(fresh_seed());
    const auto m = testing::random_matrix<BitPlaneMatrix<2, 32>>(10, 100, rng);
    const LookupTableMatrix<2, float> packed(m, lookup_table_tile_rows());
    std::vector<float> x(100, 1.0f), y(10);
    x[57] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(lookup_table_gemv(packed, x, y, 1), Catch::Contains("activation 57 of token 0"));
    x[57] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(lookup_table_gemv(packed, x, y, 1), Catch::Contains("activation 57 of token 0"));
    // Level expansion too, for every token of a batch.
    std::vector<float> xs(3 * 100, 1.0f), ys(3 * 10);
    xs[2 * 100 + 41] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(level_expansion_gemm(packed, MatrixView<const float>(std::span<const float>(xs), 3, 100),
                                             MatrixView<float>(std::span<float>(ys), 3, 10), 1),
                        Catch::Contains("activation 41 of token 2"));
    std::vector<float> short_x(99, 1.0f);
    REQUIRE_THROWS_AS(lookup_table_gemv(packed, short_x, y, 1), std::invalid_argument);
    const LookupTableMatrix<2, float> other_tiles(m, 2 * lookup_table_tile_rows());
    std::vector<float> good_x(100, 1.0f);
    REQUIRE_THROWS_WITH(lookup_table_gemv(other_tiles, good_x, y, 1), Catch::Contains("packed for tiles of"));
    REQUIRE_THROWS_AS((LookupTableMatrix<2, float>(m, 6)), std::invalid_argument);
}
