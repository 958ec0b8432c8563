// HighwayDynamicLookupBackend: the table-lookup products through multibool::highway_dynamic, the
// dynamic-dispatch translation unit. This file (and its Catch main) is compiled without -march
// flags and without HWY_COMPILE_ONLY_STATIC, as a user's portable build would be. Every target
// the library was compiled for and this CPU supports is forced in turn (Highway's
// SetSupportedTargetsForTest), so the SSSE3/SSE4/AVX2/AVX3 code and the portable fallback are all
// checked on one machine, not only the one dispatch picks.
#include <catch2/catch.hpp>

#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <multibool/backends/highway_dynamic_dispatch.hpp>
#include <multibool/backends/prepacking_backend.hpp>
#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>

#include "lookup_table_checks.hpp"
#include "test_support.hpp"

// The conformance suite on the target dispatch picks; every other target is checked below.
using conforming_backends = std::tuple<multibool::HighwayDynamicLookupBackend>;
#include "backend_conformance.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

static_assert(PrepackingBackend<HighwayDynamicLookupBackend, BitPlaneMatrix<3, 128>>);
static_assert(PrepackingBackend<HighwayDynamicLookupBackend, BitPlaneMatrix<1, per_row, half, std::uint8_t>>);

constexpr std::size_t shape_rows[] = {1, 5, 70, 130};
constexpr std::size_t shape_cols[] = {1, 7, 63, 65, 172, 300, 600};

// Every target the dispatch unit was compiled for that this CPU runs, best first.
std::vector<std::int64_t> runnable_targets() {
    std::vector<std::int64_t> targets;
    for (std::int64_t bits = detail::compiled_targets() & hwy::SupportedTargets(); bits != 0; bits &= bits - 1) {
        targets.push_back(bits & -bits);
    }
    return targets;
}

// Makes dispatch pick `target` until destroyed (then the best supported one again).
class ForcedTarget {
public:
    explicit ForcedTarget(std::int64_t target) { hwy::SetSupportedTargetsForTest(target); }
    ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
    ForcedTarget(const ForcedTarget&) = delete;
    ForcedTarget& operator=(const ForcedTarget&) = delete;
};

struct CheckDispatchedProducts {
    std::mt19937_64& rng;
    HighwayDynamicLookupBackend backend{1};

    template <class Matrix>
    void operator()() {
        for (std::size_t rows : shape_rows) {
            for (std::size_t cols : shape_cols) {
                CAPTURE(Matrix::kernels, Matrix::group_size_parameter, rows, cols);
                const auto m = testing::random_matrix<Matrix>(rows, cols, rng);
                const auto packed = backend.pack(m);
                REQUIRE(packed.tile_rows() == detail::dynamic_tile_rows());
                testing::check_exact_tables(backend, m, packed, rng);
                testing::check_error_bound(backend, m, packed, rng);
            }
        }
    }
};

template <class Word, std::size_t K, class Check>
void for_each_group(Check& check) {
    check.template operator()<BitPlaneMatrix<K, 32, float, Word>>();
    check.template operator()<BitPlaneMatrix<K, 128, float, Word>>();
    check.template operator()<BitPlaneMatrix<K, per_row, float, Word>>();
}

}  // namespace

TEST_CASE("dynamic dispatch picks the best target this CPU supports", "[dispatch]") {
    const std::string target(HighwayDynamicLookupBackend::target());
    const std::int64_t supported = hwy::SupportedTargets();
    std::cout << "highway_dynamic: dispatched target " << target << ", tile rows " << detail::dynamic_tile_rows()
              << "; compiled targets:";
    for (std::int64_t bits = detail::compiled_targets(); bits != 0; bits &= bits - 1) {
        std::cout << ' ' << hwy::TargetName(bits & -bits) << ((bits & -bits & supported) ? "" : "(unsupported)");
    }
    std::cout << '\n';
    WARN("dispatched target: " << target);
    REQUIRE(detail::dynamic_target() ==
            (detail::compiled_targets() & supported & -(detail::compiled_targets() & supported)));
    REQUIRE(target == hwy::TargetName(detail::dynamic_target()));
    // HWY_WANT_AVX3_DL is defined in the .cpp: AVX3_DL is among the compiled targets.
    REQUIRE((detail::compiled_targets() & HWY_AVX3_DL) != 0);
    if ((supported & (HWY_AVX3 | HWY_AVX3_DL)) == 0) {
        std::cout << "SKIPPED: this CPU has no AVX-512; the AVX3/AVX3_DL assertion does not apply\n";
        return;
    }
    REQUIRE((target == "AVX3_DL" || target == "AVX3"));
    if (supported & HWY_AVX3_DL) REQUIRE(target == "AVX3_DL");
    REQUIRE(detail::dynamic_tile_rows() == 64);
}

TEST_CASE("dynamically dispatched lookup products: exact tables, error bound, every target", "[dispatch]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const std::int64_t target : runnable_targets()) {
        const ForcedTarget forced(target);
        CAPTURE(hwy::TargetName(target));
        REQUIRE(detail::dynamic_target() == target);
        std::cout << "highway_dynamic: checking " << hwy::TargetName(target) << " (tile rows "
                  << detail::dynamic_tile_rows() << ")\n";
        CheckDispatchedProducts check{rng};
        [&]<std::size_t... k>(std::index_sequence<k...>) { (for_each_group<std::uint64_t, k + 1>(check), ...); }
        (std::make_index_sequence<4>{});
    }
    REQUIRE(detail::dynamic_target() == runnable_targets().front());
}

TEMPLATE_TEST_CASE("dynamically dispatched lookup products read 16-bit and wide scales and any word", "[dispatch]",
                   half, bfloat16, double, float) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    CheckDispatchedProducts check{rng};
    check.operator()<BitPlaneMatrix<3, 64, TestType, std::uint64_t>>();
    check.operator()<BitPlaneMatrix<2, 32, TestType, std::uint8_t>>();
    check.operator()<BitPlaneMatrix<4, per_row, TestType, std::uint16_t>>();
}

TEST_CASE("dynamically dispatched lookup products do not depend on the thread count", "[dispatch][threads]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 1000, cols = 700, tokens = 5;
    const auto m = testing::random_matrix<BitPlaneMatrix<3, 128, half, std::uint64_t>>(rows, cols, rng);
    const auto xs = testing::random_floats(tokens * cols, rng);
    const MatrixView<const float> x_view(std::span<const float>(xs), tokens, cols);
    for (const std::int64_t target : runnable_targets()) {
        const ForcedTarget forced(target);
        CAPTURE(hwy::TargetName(target));
        const auto packed = HighwayDynamicLookupBackend(1).pack(m);
        std::vector<float> one(tokens * rows);
        HighwayDynamicLookupBackend(1).gemm(packed, x_view, MatrixView<float>(std::span<float>(one), tokens, rows));
        for (std::size_t threads : {2u, 3u, 16u}) {
            std::vector<float> many(tokens * rows);
            HighwayDynamicLookupBackend(threads).gemm(packed, x_view,
                                                      MatrixView<float>(std::span<float>(many), tokens, rows));
            REQUIRE(many == one);
        }
    }
}

TEST_CASE("dynamically dispatched products refuse bad input, naming it", "[dispatch]") {
    std::mt19937_64 rng(fresh_seed());
    const auto m = testing::random_matrix<BitPlaneMatrix<2, 32>>(10, 100, rng);
    const HighwayDynamicLookupBackend backend;
    const auto packed = backend.pack(m);
    std::vector<float> x(100, 1.0f), y(10);
    x[57] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(backend.gemv(packed, x, y), Catch::Contains("activation 57 of token 0"));
    std::vector<float> short_x(99, 1.0f);
    REQUIRE_THROWS_AS(backend.gemv(packed, short_x, y), std::invalid_argument);
    // A matrix packed while another target was chosen has another tile height.
    const auto targets = runnable_targets();
    std::vector<float> good_x(100, 1.0f);
    for (const std::int64_t target : targets) {
        const ForcedTarget forced(target);
        if (detail::dynamic_tile_rows() == packed.tile_rows()) continue;
        CAPTURE(hwy::TargetName(target));
        REQUIRE_THROWS_WITH(backend.gemv(packed, good_x, y), Catch::Contains("packed for tiles of"));
    }
}

TEST_CASE("dynamically dispatched exact products equal the scalar reference on every target", "[dispatch]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const HighwayDynamicLookupBackend backend(2);
    for (const std::int64_t target : runnable_targets()) {
        const ForcedTarget forced(target);
        CAPTURE(hwy::TargetName(target));
        // Highway's MulAdd rounds twice on the x86 targets below AVX2 and on the scalar ones.
        constexpr std::int64_t unfused = HWY_SSE4 | HWY_SSSE3 | HWY_EMU128 | HWY_SCALAR;
        const auto multiply_add = (target & unfused) != 0 ? testing::conformance::MultiplyAdd::rounded_twice
                                                          : testing::conformance::MultiplyAdd::fused;
        testing::conformance::check_shapes<HighwayDynamicLookupBackend, BitPlaneMatrix<3, 128, half>>(backend, rng,
                                                                                                      multiply_add);
        testing::conformance::check_shapes<HighwayDynamicLookupBackend, BitPlaneMatrix<1, per_row>>(backend, rng,
                                                                                                    multiply_add);
        testing::conformance::check_shapes<HighwayDynamicLookupBackend, BitPlaneMatrix<4, 32, bfloat16>>(backend, rng,
                                                                                                         multiply_add);
    }
}

TEST_CASE("HighwayDynamicLookupBackend runs what the unit does not compile on ScalarBackend", "[dispatch]") {
    std::mt19937_64 rng(fresh_seed());
    // Narrower words and K = 5 are not in MULTIBOOL_DYNAMIC_DISPATCH_LIST.
    static_assert(!detail::is_dispatched<BitPlaneMatrix<3, 64, float, std::uint8_t>>);
    static_assert(!detail::is_dispatched<BitPlaneMatrix<5, 64>>);
    static_assert(detail::is_dispatched<BitPlaneMatrix<4, 64, double>>);
    const auto m = testing::random_matrix<BitPlaneMatrix<5, 64, float, std::uint8_t>>(37, 150, rng);
    const auto x = testing::random_floats(m.cols(), rng);
    const auto dy = testing::random_floats(m.rows(), rng);
    std::vector<float> y(m.rows()), expected_y(m.rows()), dx(m.cols()), expected_dx(m.cols());
    const HighwayDynamicLookupBackend backend(4);
    backend.gemv(m, x, y);
    ScalarBackend{}.gemv(m, x, expected_y);
    REQUIRE(y == expected_y);
    backend.gemv_transposed(m, dy, dx);
    ScalarBackend{}.gemv_transposed(m, dy, expected_dx);
    REQUIRE(dx == expected_dx);
    REQUIRE(HighwayDynamicLookupBackend::name == "highway_dynamic");
}
