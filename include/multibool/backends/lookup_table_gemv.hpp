#pragma once
// Table-lookup products on a LookupTableMatrix, written once with Highway: this header compiles
// them for the one target the build flags select (static dispatch). The kernels themselves are in
// lookup_table_kernels-inl.hpp, the target-independent parts in lookup_table_common.hpp; for
// run-time dispatch over every x86 target see highway_dynamic_dispatch.hpp and
// docs/DYNAMIC_DISPATCH.md.
//
// Per 4-activation chunk the 16 signed sums ±x0±x1±x2±x3 are computed once per token and
// quantized to int8 with one scale per column block (as T-MAC does); a byte shuffle then looks up
// tile_rows rows' sums at once. One table set serves every row and all K kernels. The int8 tables
// are the only approximation: the result is exact up to their rounding (<= 0.5 / 127 of the
// block's largest chunk sum per lookup).
#include <hwy/highway.h>

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
#error \
    "multibool lookup-table products need a SIMD target with byte shuffles (SSSE3 or better): compile with e.g. -mssse3 or -march=native, or use HighwayBackend/XsimdBackend (or HighwayDynamicLookupBackend, highway_dynamic_dispatch.hpp)"
#endif

#include <cstddef>
#include <span>

#include "multibool/backends/lookup_table_common.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

// The kernels, once, for the static target.
#include "multibool/backends/lookup_table_kernels-inl.hpp"

namespace multibool {
// In the target's namespace, like HighwayBackend (see highway_backend.hpp): translation units built
// for different targets get different functions.
namespace HWY_NAMESPACE {

// Y = X W_hat^T through the int8 tables; tiles of rows are shared out among `threads`.
template <std::size_t K, class Scale>
void lookup_table_gemm(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                       std::size_t threads) {
    lookup_table_gemm_target(m, xs, ys, threads);
}

// Each batched path on its own, for callers that choose (tests, benchmarks): lookup_table_gemm
// picks by batch size.
template <std::size_t K, class Scale>
void table_lookup_gemm(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                       std::size_t threads) {
    table_lookup_gemm_target(m, xs, ys, threads);
}
template <std::size_t K, class Scale>
void level_expansion_gemm(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys,
                          std::size_t threads) {
    level_expansion_gemm_target(m, xs, ys, threads);
}

template <std::size_t K, class Scale>
void lookup_table_gemv(const LookupTableMatrix<K, Scale>& m, std::span<const float> x, std::span<float> y,
                       std::size_t threads) {
    check_length("lookup_table_gemv", "x", m.cols(), x.size());
    check_length("lookup_table_gemv", "y", m.rows(), y.size());
    lookup_table_gemm(m, MatrixView<const float>(x, 1, x.size()), MatrixView<float>(y, 1, y.size()), threads);
}

}  // namespace HWY_NAMESPACE

// The static target's entry points, and the tile height of the layout that target reads.
using HWY_NAMESPACE::level_expansion_gemm;
using HWY_NAMESPACE::lookup_table_gemm;
using HWY_NAMESPACE::lookup_table_gemv;
using HWY_NAMESPACE::lookup_table_tile_rows;
using HWY_NAMESPACE::table_lookup_gemm;

}  // namespace multibool
