#pragma once
// HighwayDynamicLookupBackend: the products of HighwayLookupBackend with run-time dispatch. Its
// kernels are compiled once, in one translation unit that includes
// highway_dynamic_dispatch_unit.hpp without -march flags: Highway compiles them there for every
// x86 target it knows (SSSE3, SSE4, AVX2, AVX3, AVX3_DL, plus a portable fallback) and picks the
// best one the CPU running it supports, the first time a product is called. CMake builds that
// unit as multibool::highway_dynamic; docs/DYNAMIC_DISPATCH.md has the plain compiler lines.
// This header itself includes no Highway code, so it can be compiled with any flags.
//
// Dispatched: the table-lookup products on a packed LookupTableMatrix, and every product of the
// unpacked matrix (exact float, transposed, int8, Boolean) for 64-bit words; the kernels are the
// same -inl code as the static-dispatch backends'. The (K, scale type) pairs compiled are the
// list below; any other matrix (another word width, a storage other than BitPlaneMatrix) runs
// ScalarBackend's products.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>

#include "multibool/backends/backend_common.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/backends/packed_planes.hpp"
#include "multibool/backends/scalar_backend.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

// The (K, scale type, name suffix) triples the dispatch unit compiles: the one list that the
// declarations here and the definitions and dispatch tables of highway_dynamic_dispatch_unit.hpp
// expand (Highway's dispatch tables need one named, non-template function per instantiation).
// K stops at 4: each K is compiled for six targets and four scale types, and 4 covers the kernel
// counts models use (VariableKernelLinear's default too).
#define MULTIBOOL_DYNAMIC_DISPATCH_SCALES(X, K) \
    X(K, float, F32) X(K, double, F64) X(K, ::multibool::half, F16) X(K, ::multibool::bfloat16, BF16)
#define MULTIBOOL_DYNAMIC_DISPATCH_LIST(X)  \
    MULTIBOOL_DYNAMIC_DISPATCH_SCALES(X, 1) \
    MULTIBOOL_DYNAMIC_DISPATCH_SCALES(X, 2) \
    MULTIBOOL_DYNAMIC_DISPATCH_SCALES(X, 3) MULTIBOOL_DYNAMIC_DISPATCH_SCALES(X, 4)

namespace multibool {

// The word type of the dispatched products on the unpacked matrix.
using DispatchedWord = std::uint64_t;

namespace detail {

// Defined in highway_dynamic_dispatch_unit.hpp, each on the target chosen at run time: Y = X W_hat^T
// through the int8 tables (m packed for that target's tile height, dynamic_tile_rows()), and the
// ProductBackend products of the unpacked matrix.
#define MULTIBOOL_DYNAMIC_DISPATCH_DECLARE(K, SCALE, SUFFIX)                                                       \
    void lookup_table_gemm(const LookupTableMatrix<K, SCALE>& m, MatrixView<const float> xs, MatrixView<float> ys, \
                           std::size_t threads);                                                                   \
    void dispatched_gemm(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> xs,              \
                         MatrixView<float> ys, std::size_t threads);                                               \
    void dispatched_gemm_transposed(const PackedPlanes<K, SCALE, DispatchedWord>& m, MatrixView<const float> dys,  \
                                    MatrixView<float> dxs, std::size_t threads);                                   \
    void dispatched_gemv_int8(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                     \
                              const Int8Activations<DispatchedWord>& xq, std::span<float> y, std::size_t threads); \
    void dispatched_gemv_boolean(const PackedPlanes<K, SCALE, DispatchedWord>& m,                                  \
                                 const BooleanActivations<DispatchedWord>& xb, std::span<float> y,                 \
                                 std::size_t threads);
MULTIBOOL_DYNAMIC_DISPATCH_LIST(MULTIBOOL_DYNAMIC_DISPATCH_DECLARE)
#undef MULTIBOOL_DYNAMIC_DISPATCH_DECLARE

#define MULTIBOOL_DYNAMIC_DISPATCH_KERNEL_COUNT(K, SCALE, SUFFIX) K,
inline constexpr std::size_t dispatched_kernel_counts[] = {
    MULTIBOOL_DYNAMIC_DISPATCH_LIST(MULTIBOOL_DYNAMIC_DISPATCH_KERNEL_COUNT)};
#undef MULTIBOOL_DYNAMIC_DISPATCH_KERNEL_COUNT

// The largest K the unit compiles (every K from 1 up to it, for every ScaleType).
inline constexpr std::size_t dispatched_max_kernels =
    *std::max_element(std::begin(dispatched_kernel_counts), std::end(dispatched_kernel_counts));

// The tile height of the LookupTableMatrix layout the chosen target reads.
std::size_t dynamic_tile_rows();
// The chosen target, as Highway's target bit (e.g. HWY_AVX3_DL) and as its name ("AVX3_DL").
std::int64_t dynamic_target();
std::string_view dynamic_target_name();
// Every target the unit was compiled for, as a mask of Highway target bits (HWY_TARGETS there).
std::int64_t compiled_targets();

// Whether M's products go through the unit: a BitPlaneMatrix of 64-bit words and a compiled K.
template <class M>
inline constexpr bool is_dispatched = false;
template <std::size_t K, std::size_t G, class Scale>
inline constexpr bool is_dispatched<BitPlaneMatrix<K, G, Scale, DispatchedWord>> = K <= dispatched_max_kernels;

}  // namespace detail

class HighwayDynamicLookupBackend : public ProductEntryPoints<HighwayDynamicLookupBackend> {
public:
    static constexpr std::string_view name = "highway_dynamic";

    using ProductEntryPoints<HighwayDynamicLookupBackend>::ProductEntryPoints;

    // The Highway target the products were dispatched to on this CPU, e.g. "AVX3_DL".
    [[nodiscard]] static std::string_view target() { return detail::dynamic_target_name(); }

    using ProductEntryPoints<HighwayDynamicLookupBackend>::gemm;
    using ProductEntryPoints<HighwayDynamicLookupBackend>::gemv;

    template <BitPlaneStorage M>
    using packed_type = LookupTableMatrix<M::kernels, typename M::scale_type>;

    // Packed for the tile height of the target chosen at run time.
    template <BitPlaneStorage M>
    [[nodiscard]] packed_type<M> pack(const M& m) const {
        check_kernels<M::kernels>();
        return packed_type<M>(m, detail::dynamic_tile_rows());
    }

    template <std::size_t K, class Scale>
    void gemv(const LookupTableMatrix<K, Scale>& m, std::span<const float> x, std::span<float> y) const {
        check_length("HighwayDynamicLookupBackend::gemv", "x", m.cols(), x.size());
        check_length("HighwayDynamicLookupBackend::gemv", "y", m.rows(), y.size());
        gemm(m, MatrixView<const float>(x, 1, x.size()), MatrixView<float>(y, 1, y.size()));
    }
    template <std::size_t K, class Scale>
    void gemm(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        check_kernels<K>();
        detail::lookup_table_gemm(m, xs, ys, threads_);
    }

private:
    friend class ProductEntryPoints<HighwayDynamicLookupBackend>;

    template <class M>
    void forward_products(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        if constexpr (detail::is_dispatched<M>) {
            detail::dispatched_gemm(PackedPlanes(m), xs, ys, threads_);
        } else {
            ScalarBackend().gemm(m, xs, ys);
        }
    }
    template <class M>
    void transposed_products(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        if constexpr (detail::is_dispatched<M>) {
            detail::dispatched_gemm_transposed(PackedPlanes(m), dys, dxs, threads_);
        } else {
            ScalarBackend().gemm_transposed(m, dys, dxs);
        }
    }
    template <class M>
    void int8_products(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        if constexpr (detail::is_dispatched<M>) {
            detail::dispatched_gemv_int8(PackedPlanes(m), xq, y, threads_);
        } else {
            ScalarBackend().gemv_int8(m, xq, y);
        }
    }
    template <class M>
    void boolean_products(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        if constexpr (detail::is_dispatched<M>) {
            detail::dispatched_gemv_boolean(PackedPlanes(m), xb, y, threads_);
        } else {
            ScalarBackend().gemv_boolean(m, xb, y);
        }
    }

    template <std::size_t K>
    static constexpr void check_kernels() {
        static_assert(
            K >= 1 && K <= detail::dispatched_max_kernels,
            "HighwayDynamicLookupBackend: the dispatch unit compiles the table-lookup kernels for K = 1..4 "
            "only (MULTIBOOL_DYNAMIC_DISPATCH_LIST); use HighwayLookupBackend (static dispatch) for larger K");
    }
};

}  // namespace multibool
