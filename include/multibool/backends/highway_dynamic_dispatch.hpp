#pragma once
// HighwayDynamicLookupBackend: the table-lookup products of HighwayLookupBackend with run-time
// dispatch. Its kernels live in one translation unit, highway_dynamic_dispatch.cpp (next to this
// header), that Highway compiles for every x86 target it knows (SSSE3, SSE4, AVX2, AVX3, AVX3_DL,
// plus a portable fallback) and that picks the best one the CPU running it supports, the first
// time a product is called. Compile that file once, without -march flags, and link it: CMake
// target multibool::highway_dynamic, or see docs/DYNAMIC_DISPATCH.md for a plain compiler line.
// This header itself includes no Highway code, so it can be compiled with any flags.
//
// Only the prepacked float products (gemv/gemm on a LookupTableMatrix) are dispatched. The other
// products (exact float products on the unpacked matrix, transposed, int8, Boolean) are the
// ScalarBackend's: HighwayBackend and XsimdBackend are compiled for one target only, their
// scalar fallback when built without -march flags, so they would bring nothing portable here.
// The dispatched kernels cover K = 1..4 (the kernel counts instantiated in the .cpp) and every
// scale type of a BitPlaneMatrix (float, double, half, bfloat16; packed scales are float, half or
// bfloat16).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/backends/scalar_backend.hpp"

namespace multibool {

namespace highway_dynamic_detail {

// The largest kernel count highway_dynamic_dispatch.cpp instantiates.
inline constexpr std::size_t max_kernels = 4;

// Defined in highway_dynamic_dispatch.cpp: Y = X W_hat^T on the target chosen at run time (the
// matrix must be packed for that target's tile height, tile_rows()).
#define MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE(K)                                                                         \
    void lookup_table_gemm(const LookupTableMatrix<K, float>& m, MatrixView<const float> xs, MatrixView<float> ys,     \
                           std::size_t threads);                                                                      \
    void lookup_table_gemm(const LookupTableMatrix<K, double>& m, MatrixView<const float> xs, MatrixView<float> ys,    \
                           std::size_t threads);                                                                      \
    void lookup_table_gemm(const LookupTableMatrix<K, half>& m, MatrixView<const float> xs, MatrixView<float> ys,      \
                           std::size_t threads);                                                                      \
    void lookup_table_gemm(const LookupTableMatrix<K, bfloat16>& m, MatrixView<const float> xs, MatrixView<float> ys, \
                           std::size_t threads);
MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE(1)
MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE(2)
MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE(3)
MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE(4)
#undef MULTIBOOL_HIGHWAY_DYNAMIC_DECLARE

// The tile height of the LookupTableMatrix layout the chosen target reads.
std::size_t tile_rows();
// The chosen target, as Highway's target bit (e.g. HWY_AVX3_DL) and as its name ("AVX3_DL").
std::int64_t target();
std::string_view target_name();
// Every target the .cpp was compiled for, as a mask of Highway target bits (HWY_TARGETS there).
std::int64_t compiled_targets();

}  // namespace highway_dynamic_detail

class HighwayDynamicLookupBackend : public ScalarBackend {
public:
    static constexpr std::string_view name = "highway_dynamic";

    // threads: how many threads a dispatched product may use (at least 1), from the shared ThreadPool.
    // Not explicit when defaulted, so that `Backend backend = {}` default arguments work.
    HighwayDynamicLookupBackend() noexcept = default;
    explicit HighwayDynamicLookupBackend(std::size_t threads) noexcept : threads_(std::max<std::size_t>(threads, 1)) {}

    [[nodiscard]] std::size_t threads() const noexcept { return threads_; }

    // The Highway target the products were dispatched to on this CPU, e.g. "AVX3_DL".
    [[nodiscard]] static std::string_view target() { return highway_dynamic_detail::target_name(); }

    using ScalarBackend::gemm;
    using ScalarBackend::gemv;

    template <BitPlaneStorage M>
    using packed_type = LookupTableMatrix<M::kernels, typename M::scale_type>;

    // Packed for the tile height of the target chosen at run time.
    template <BitPlaneStorage M>
    [[nodiscard]] packed_type<M> pack(const M& m) const {
        check_kernels<M::kernels>();
        return packed_type<M>(m, highway_dynamic_detail::tile_rows());
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
        highway_dynamic_detail::lookup_table_gemm(m, xs, ys, threads_);
    }

private:
    template <std::size_t K>
    static constexpr void check_kernels() {
        static_assert(K >= 1 && K <= highway_dynamic_detail::max_kernels,
                      "HighwayDynamicLookupBackend: highway_dynamic_dispatch.cpp compiles the kernels for K = 1..4 "
                      "only; use HighwayLookupBackend (static dispatch) for larger K");
    }

    std::size_t threads_ = 1;
};

}  // namespace multibool
