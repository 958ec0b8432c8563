#pragma once
// HighwayBackend: the ProductBackend products with Highway's portable SIMD, compiled for the one
// target the build flags select (static dispatch; target() names it). The kernels are in
// highway_backend-inl.hpp. With -march=native, Highway 1.0.3 needs HWY_COMPILE_ONLY_STATIC=1 (see
// docs/ARCHITECTURE.md, "Build"); without -march flags the same code compiles for Highway's scalar
// target.
//
// The class lives in the target's namespace (multibool::N_AVX3::HighwayBackend, ...) and
// multibool::HighwayBackend names the one of this translation unit's target: two translation units
// built with different flags get two distinct types, so a program never runs one target's code
// where the other was compiled for.
#include <hwy/highway.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>

#include "multibool/backends/backend_common.hpp"
#include "multibool/backends/boolean_activations.hpp"
#include "multibool/backends/int8_activations.hpp"
#include "multibool/core/matrix_view.hpp"

#include "multibool/backends/highway_backend-inl.hpp"

namespace multibool {
namespace HWY_NAMESPACE {

class HighwayBackend : public ProductEntryPoints<HighwayBackend> {
public:
    static constexpr std::string_view name = "highway";

    using ProductEntryPoints<HighwayBackend>::ProductEntryPoints;

    // The Highway target the kernels were compiled for, e.g. "AVX3", or "SCALAR" without -march.
    [[nodiscard]] static std::string_view target() noexcept { return hwy::TargetName(HWY_STATIC_TARGET); }

private:
    friend class ProductEntryPoints<HighwayBackend>;

    template <class M>
    void forward_products(const M& m, MatrixView<const float> xs, MatrixView<float> ys) const {
        highway_kernels::forward_products(threads_, m, xs, ys);
    }
    template <class M>
    void transposed_products(const M& m, MatrixView<const float> dys, MatrixView<float> dxs) const {
        highway_kernels::transposed_products(threads_, m, dys, dxs);
    }
    template <class M>
    void int8_products(const M& m, const Int8Activations<typename M::word_type>& xq, std::span<float> y) const {
        highway_kernels::int8_products(threads_, m, xq, y);
    }
    template <class M>
    void boolean_products(const M& m, const BooleanActivations<typename M::word_type>& xb, std::span<float> y) const {
        highway_kernels::boolean_products(threads_, m, xb, y);
    }
};

}  // namespace HWY_NAMESPACE

using HighwayBackend = HWY_NAMESPACE::HighwayBackend;

}  // namespace multibool
