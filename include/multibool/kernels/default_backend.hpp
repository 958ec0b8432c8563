#pragma once
// The backend MultiBoolLinear uses unless told otherwise: the best one compiled in.
#include "multibool/kernels/scalar_backend.hpp"

namespace multibool {

using DefaultBackend = ScalarBackend;

}  // namespace multibool
