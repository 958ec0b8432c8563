// The opt-in dynamic-dispatch translation unit of multibool (docs/DYNAMIC_DISPATCH.md): compile it
// once in your project, WITHOUT -march flags (nor HWY_COMPILE_ONLY_STATIC), with the multibool
// include directory on the include path, and link it with libhwy. It defines the functions
// highway_dynamic_dispatch.hpp declares for HighwayDynamicLookupBackend.
//
// Highway's foreach_target.h includes this file again once per target (SSSE3, SSE4, AVX2, AVX3,
// AVX3_DL and the portable fallback on x86), each time compiling lookup_table_kernels-inl.hpp and
// the entry points below into the namespace of that target; HWY_EXPORT tables them and
// HWY_DYNAMIC_DISPATCH calls the best one the CPU supports (chosen on first use).

// Highway 1.0.3 leaves AVX3_DL (AVX-512 with VBMI2, VNNI, VPOPCNTDQ...) out of the dispatched
// targets unless asked for: without this, AVX3_DL CPUs run the AVX3 code.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL 1
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "multibool/backends/highway_dynamic_dispatch.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/backends/highway_dynamic_dispatch.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"

#include "multibool/backends/lookup_table_kernels-inl.hpp"

// The entry points of one target: plain (non-template) functions, as HWY_EXPORT needs.
HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace highway_dynamic_detail {
namespace HWY_NAMESPACE {

#define MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY(K, SCALE, SUFFIX)                                                    \
    void LookupTableGemm##K##SUFFIX(const LookupTableMatrix<K, SCALE>& m, MatrixView<const float> xs,      \
                                    MatrixView<float> ys, std::size_t threads) {                           \
        multibool::HWY_NAMESPACE::lookup_table_gemm_target(m, xs, ys, threads);                            \
    }
#define MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES(K)            \
    MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY(K, float, F32)      \
    MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY(K, double, F64)     \
    MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY(K, half, F16)       \
    MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY(K, bfloat16, BF16)
MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES(1)
MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES(2)
MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES(3)
MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES(4)
#undef MULTIBOOL_HIGHWAY_DYNAMIC_ENTRIES
#undef MULTIBOOL_HIGHWAY_DYNAMIC_ENTRY

std::size_t TileRows() { return multibool::HWY_NAMESPACE::lookup_table_tile_rows(); }
std::int64_t Target() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace highway_dynamic_detail
}  // namespace multibool
HWY_AFTER_NAMESPACE();

// Once, after every target: the dispatch tables and the functions the header declares.
#if HWY_ONCE
namespace multibool {
namespace highway_dynamic_detail {

#define MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH(K, SCALE, SUFFIX)                                                  \
    HWY_EXPORT(LookupTableGemm##K##SUFFIX);                                                                   \
    void lookup_table_gemm(const LookupTableMatrix<K, SCALE>& m, MatrixView<const float> xs, MatrixView<float> ys, \
                           std::size_t threads) {                                                             \
        HWY_DYNAMIC_DISPATCH(LookupTableGemm##K##SUFFIX)(m, xs, ys, threads);                                 \
    }
#define MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES(K)            \
    MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH(K, float, F32)      \
    MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH(K, double, F64)     \
    MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH(K, half, F16)       \
    MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH(K, bfloat16, BF16)
MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES(1)
MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES(2)
MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES(3)
MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES(4)
#undef MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCHES
#undef MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH

static_assert(max_kernels == 4, "highway_dynamic_dispatch.cpp: instantiate every K up to max_kernels");

HWY_EXPORT(TileRows);
HWY_EXPORT(Target);

std::size_t tile_rows() { return HWY_DYNAMIC_DISPATCH(TileRows)(); }
std::int64_t target() { return HWY_DYNAMIC_DISPATCH(Target)(); }
std::string_view target_name() { return hwy::TargetName(target()); }
std::int64_t compiled_targets() { return HWY_TARGETS; }

}  // namespace highway_dynamic_detail
}  // namespace multibool
#endif  // HWY_ONCE
