// The dynamic-dispatch unit of multibool (docs/DYNAMIC_DISPATCH.md): include this file in exactly
// one .cpp of your program, compiled WITHOUT -march flags (nor HWY_COMPILE_ONLY_STATIC), and link
// it with libhwy; CMake's multibool::highway_dynamic does exactly that. It defines the functions
// highway_dynamic_dispatch.hpp declares for HighwayDynamicLookupBackend.
//
// Highway's foreach_target.h includes this file again once per target (SSSE3, SSE4, AVX2, AVX3,
// AVX3_DL and the portable fallback on x86), each time compiling the -inl kernels and the entry
// points below into the namespace of that target; HWY_EXPORT tables them and HWY_DYNAMIC_DISPATCH
// calls the best one the CPU supports (chosen on first use). No #pragma once: it is re-included.

// Highway 1.0.3 leaves AVX3_DL (AVX-512 with VBMI2, VNNI, VPOPCNTDQ...) out of the dispatched
// targets unless asked for: without this, AVX3_DL CPUs run the AVX3 code.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL 1
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "multibool/backends/highway_dynamic_dispatch_unit.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/highway_dynamic_dispatch.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/backends/packed_planes.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"

#include "multibool/backends/highway_backend-inl.hpp"
#include "multibool/backends/lookup_table_kernels-inl.hpp"

// The entry points of one target: plain (non-template) functions, as HWY_EXPORT needs.
HWY_BEFORE_NAMESPACE();
namespace multibool {
namespace detail {
namespace HWY_NAMESPACE {

namespace kernels = multibool::HWY_NAMESPACE::highway_kernels;

#define MULTIBOOL_DYNAMIC_DISPATCH_ENTRY(K, SCALE, SUFFIX)                                                         \
    void LookupTableGemm##K##SUFFIX(const LookupTableMatrix<K, SCALE>& m, MatrixView<const float> xs,              \
                                    MatrixView<float> ys, std::size_t threads) {                                   \
        multibool::HWY_NAMESPACE::lookup_table_gemm_target(m, xs, ys, threads);                                    \
    }                                                                                                              \
    void Gemm##K##SUFFIX(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> xs,              \
                         MatrixView<float> ys, std::size_t threads) {                                              \
        kernels::forward_products(threads, m, xs, ys);                                                             \
    }                                                                                                              \
    void GemmTransposed##K##SUFFIX(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> dys,   \
                                   MatrixView<float> dxs, std::size_t threads) {                                   \
        kernels::transposed_products(threads, m, dys, dxs);                                                        \
    }                                                                                                              \
    void GemvInt8##K##SUFFIX(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                      \
                             const Int8Activations<DispatchedWord>& xq, std::span<float> y, std::size_t threads) { \
        kernels::int8_products(threads, m, xq, y);                                                                 \
    }                                                                                                              \
    void GemvBoolean##K##SUFFIX(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                   \
                                const BooleanActivations<DispatchedWord>& xb, std::span<float> y,                  \
                                std::size_t threads) {                                                             \
        kernels::boolean_products(threads, m, xb, y);                                                              \
    }
MULTIBOOL_DYNAMIC_DISPATCH_LIST(MULTIBOOL_DYNAMIC_DISPATCH_ENTRY)
#undef MULTIBOOL_DYNAMIC_DISPATCH_ENTRY

std::size_t TileRows() { return multibool::HWY_NAMESPACE::lookup_table_tile_rows(); }
std::int64_t Target() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace detail
}  // namespace multibool
HWY_AFTER_NAMESPACE();

// Once, after every target: the dispatch tables and the functions the header declares.
#if HWY_ONCE
namespace multibool {
namespace detail {

#define MULTIBOOL_DYNAMIC_DISPATCH_TABLES(K, SCALE, SUFFIX)                                                         \
    HWY_EXPORT(LookupTableGemm##K##SUFFIX);                                                                         \
    HWY_EXPORT(Gemm##K##SUFFIX);                                                                                    \
    HWY_EXPORT(GemmTransposed##K##SUFFIX);                                                                          \
    HWY_EXPORT(GemvInt8##K##SUFFIX);                                                                                \
    HWY_EXPORT(GemvBoolean##K##SUFFIX);                                                                             \
    void lookup_table_gemm(const LookupTableMatrix<K, SCALE>& m, MatrixView<const float> xs, MatrixView<float> ys,  \
                           std::size_t threads) {                                                                   \
        HWY_DYNAMIC_DISPATCH(LookupTableGemm##K##SUFFIX)(m, xs, ys, threads);                                       \
    }                                                                                                               \
    void dispatched_gemm(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> xs,               \
                         MatrixView<float> ys, std::size_t threads) {                                               \
        HWY_DYNAMIC_DISPATCH(Gemm##K##SUFFIX)(m, xs, ys, threads);                                                  \
    }                                                                                                               \
    void dispatched_gemm_transposed(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> dys,   \
                                    MatrixView<float> dxs, std::size_t threads) {                                   \
        HWY_DYNAMIC_DISPATCH(GemmTransposed##K##SUFFIX)(m, dys, dxs, threads);                                      \
    }                                                                                                               \
    void dispatched_gemv_int8(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                      \
                              const Int8Activations<DispatchedWord>& xq, std::span<float> y, std::size_t threads) { \
        HWY_DYNAMIC_DISPATCH(GemvInt8##K##SUFFIX)(m, xq, y, threads);                                               \
    }                                                                                                               \
    void dispatched_gemv_boolean(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                   \
                                 const BooleanActivations<DispatchedWord>& xb, std::span<float> y,                  \
                                 std::size_t threads) {                                                             \
        HWY_DYNAMIC_DISPATCH(GemvBoolean##K##SUFFIX)(m, xb, y, threads);                                            \
    }
MULTIBOOL_DYNAMIC_DISPATCH_LIST(MULTIBOOL_DYNAMIC_DISPATCH_TABLES)
#undef MULTIBOOL_DYNAMIC_DISPATCH_TABLES

HWY_EXPORT(TileRows);
HWY_EXPORT(Target);

std::size_t dynamic_tile_rows() { return HWY_DYNAMIC_DISPATCH(TileRows)(); }
std::int64_t dynamic_target() { return HWY_DYNAMIC_DISPATCH(Target)(); }
std::string_view dynamic_target_name() { return hwy::TargetName(dynamic_target()); }
std::int64_t compiled_targets() { return HWY_TARGETS; }

}  // namespace detail
}  // namespace multibool
#endif  // HWY_ONCE
