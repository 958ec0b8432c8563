// The conformance suite (backend_conformance.hpp) for every backend this build compiles with its
// native flags. HighwayDynamicLookupBackend runs it in test_dynamic_dispatch.cpp.
#include <tuple>
#include <utility>

#if MULTIBOOL_HAS_HIGHWAY
#include <multibool/backends/highway_backend.hpp>
#endif
#if MULTIBOOL_HAS_XSIMD
#include <multibool/backends/xsimd_backend.hpp>
#endif

namespace {
template <class... Lists>
using concatenated = decltype(std::tuple_cat(std::declval<Lists>()...));

#if MULTIBOOL_HAS_HIGHWAY
using highway_backends = std::tuple<multibool::HighwayBackend>;
#else
using highway_backends = std::tuple<>;
#endif
#if MULTIBOOL_HAS_XSIMD
using xsimd_backends = std::tuple<multibool::XsimdBackend>;
#else
using xsimd_backends = std::tuple<>;
#endif
}  // namespace

using conforming_backends = concatenated<highway_backends, xsimd_backends>;

#include "backend_conformance.hpp"

static_assert(multibool::ProductBackend<multibool::ScalarBackend, multibool::BitPlaneMatrix<3, 128>>);
