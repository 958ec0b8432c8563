#pragma once
// Where the shared model and texts live: $MULTIBOOL_ASSETS, else the folder CMake was told
// (MULTIBOOL_ASSETS cache variable, by default ../shared/assets beside the repository).
#include <cstdlib>
#include <filesystem>

namespace multibool::examples {

inline std::filesystem::path assets_dir() {
    if (const char* env = std::getenv("MULTIBOOL_ASSETS"); env != nullptr && *env != '\0') return env;
#ifdef MULTIBOOL_DEFAULT_ASSETS
    return MULTIBOOL_DEFAULT_ASSETS;
#else
    return "../shared/assets";
#endif
}

}  // namespace multibool::examples
