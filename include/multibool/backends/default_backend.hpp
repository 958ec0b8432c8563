#pragma once
// The backend MultiBoolLinear uses unless told otherwise: the fastest one compiled in. Highway's
// table-lookup backend needs a SIMD target with byte shuffles; under Highway's scalar fallback
// (no -m flags on x86) the xsimd backend, or the scalar reference, is used instead.
// Note: the table-lookup forward products round activations to int8 tables (about 0.35 % of a
// layer's output on the shipped model); pass HighwayBackend where products must be exact.
#if MULTIBOOL_HAS_HIGHWAY
#include <hwy/highway.h>
#endif

#if MULTIBOOL_HAS_HIGHWAY && HWY_STATIC_TARGET != HWY_SCALAR && HWY_STATIC_TARGET != HWY_EMU128
#include "multibool/backends/highway_lookup_backend.hpp"
namespace multibool {
using DefaultBackend = HighwayLookupBackend;
}  // namespace multibool
#elif MULTIBOOL_HAS_XSIMD
#include "multibool/backends/xsimd_backend.hpp"
namespace multibool {
using DefaultBackend = XsimdBackend;
}  // namespace multibool
#else
#include "multibool/backends/scalar_backend.hpp"
namespace multibool {
using DefaultBackend = ScalarBackend;
}  // namespace multibool
#endif
