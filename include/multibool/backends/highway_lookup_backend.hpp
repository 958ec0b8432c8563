#pragma once
// HighwayLookupBackend: the Highway backend whose float-activation forward products run on a
// prepacked LookupTableMatrix through int8 tables (lookup_table_gemv.hpp) — the fast decode
// path. Every other product, and the exact-float GEMV/GEMM on the unpacked matrix, are the
// HighwayBackend's. In the target's namespace, like HighwayBackend.
#include <cstddef>
#include <span>
#include <string_view>

#include "multibool/backends/highway_backend.hpp"
#include "multibool/backends/lookup_table_gemv.hpp"
#include "multibool/backends/lookup_table_matrix.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {
namespace HWY_NAMESPACE {

class HighwayLookupBackend : public HighwayBackend {
public:
    static constexpr std::string_view name = "highway_lut";

    using HighwayBackend::gemm;
    using HighwayBackend::gemv;
    using HighwayBackend::HighwayBackend;

    template <BitPlaneStorage M>
    using packed_type = LookupTableMatrix<M::kernels, typename M::scale_type>;

    template <BitPlaneStorage M>
    [[nodiscard]] packed_type<M> pack(const M& m) const {
        return packed_type<M>(m, lookup_table_tile_rows());
    }

    template <std::size_t K, class Scale>
    void gemv(const LookupTableMatrix<K, Scale>& m, std::span<const float> x, std::span<float> y) const {
        lookup_table_gemv(m, x, y, threads());
    }
    template <std::size_t K, class Scale>
    void gemm(const LookupTableMatrix<K, Scale>& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        lookup_table_gemm(m, xs, ys, threads());
    }
};

}  // namespace HWY_NAMESPACE

using HighwayLookupBackend = HWY_NAMESPACE::HighwayLookupBackend;

}  // namespace multibool
