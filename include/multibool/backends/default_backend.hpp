#pragma once
// The backends MultiBoolLinear and the examples use unless told otherwise: the fastest ones
// compiled in.
// - DefaultBackend: the fastest forward products. Highway's table-lookup backend needs a SIMD
//   target with byte shuffles; under Highway's scalar fallback (no -m flags on x86), or without
//   Highway, the xsimd backend, or the scalar reference, is used instead. The table-lookup forward
//   products round activations to int8 tables (about 0.35 % of a layer's output on the shipped
//   model); batches at K >= 2 on VNNI targets use level expansion instead (level_expansion.hpp:
//   int8 activations and weight levels, a bound of the same kind).
// - ExactBackend: the fastest backend whose products are exact float sums (no int8 tables), for
//   training and wherever products must be exact.
#if MULTIBOOL_HAS_HIGHWAY
#include <hwy/highway.h>
#endif

#if MULTIBOOL_HAS_HIGHWAY && HWY_STATIC_TARGET != HWY_SCALAR && HWY_STATIC_TARGET != HWY_EMU128
#include "multibool/backends/highway_backend.hpp"
#include "multibool/backends/highway_lookup_backend.hpp"
namespace multibool {
using DefaultBackend = HighwayLookupBackend;
using ExactBackend = HighwayBackend;
}  // namespace multibool
#elif MULTIBOOL_HAS_XSIMD
#include "multibool/backends/xsimd_backend.hpp"
namespace multibool {
using DefaultBackend = XsimdBackend;
using ExactBackend = XsimdBackend;
}  // namespace multibool
#else
#include "multibool/backends/scalar_backend.hpp"
namespace multibool {
using DefaultBackend = ScalarBackend;
using ExactBackend = ScalarBackend;
}  // namespace multibool
#endif
