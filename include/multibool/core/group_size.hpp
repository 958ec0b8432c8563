#pragma once
#include <cstddef>

namespace multibool {

// Group size value meaning "one scale group spans the whole row" (per-channel scales).
inline constexpr std::size_t per_row = 0;

}  // namespace multibool
