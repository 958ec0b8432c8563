#pragma once
#include <cstddef>

namespace multibool {

// Group size value meaning "one scale group spans the whole row" (per-channel scales).
inline constexpr std::size_t per_row = 0;

// Groups of group_size (>= 1) columns covering cols, the last one possibly shorter. Written
// without cols + group_size - 1, which wraps for a group size near SIZE_MAX.
constexpr std::size_t group_count(std::size_t cols, std::size_t group_size) noexcept {
    return cols / group_size + (cols % group_size != 0 ? 1 : 0);
}

}  // namespace multibool
